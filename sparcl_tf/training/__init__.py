"""The continual-learning train step (`step`), written once, and the Keras model that runs it
(`continual_model`); the exported `train` signature (`export.module`) runs the same step."""
