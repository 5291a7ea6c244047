"""The microcontroller path: int8 frozen backbone in TFLite Micro, SparCL on a small head."""
