"""The benchmark (`python -m tools.benchmark`, see `__main__.py`): presets side by side, and the
timings of the train step, the session hosts, tf.distribute and the exported ops; one module per
mode."""
