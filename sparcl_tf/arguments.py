"""Checks of a public call's plain arguments (switches, verbosity, hooks, callbacks, test data),
made before the call changes anything: one ValueError naming the argument and what it must be.
(Images and labels are `data.examples`; config values are `config.validate`.)"""

import keras


def check_bool(who, name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{who}: {name}={value!r} is invalid: must be True or False")
    return value


def check_verbose(who, value):
    if value not in (0, 1, 2) or isinstance(value, float):
        raise ValueError(f"{who}: verbose={value!r} is invalid: must be 0, 1 or 2")
    return value


def check_hook(who, name, value):
    """None or a function."""
    if value is not None and not callable(value):
        raise ValueError(f"{who}: {name}={value!r:.60} is invalid: must be a function or None")
    return value


def check_callbacks(who, value):
    """None or a list of Keras callbacks."""
    if value is not None and not (isinstance(value, (list, tuple)) and all(
            isinstance(callback, keras.callbacks.Callback) for callback in value)):
        raise ValueError(f"{who}: callbacks={value!r:.60} is invalid: must be a list of "
                         f"keras.callbacks.Callback or None")
    return value


def check_pair(who, name, value):
    """None or an (x, y) pair."""
    if value is not None and not (isinstance(value, (list, tuple)) and len(value) == 2):
        size = f" of {len(value)}" if hasattr(value, "__len__") else ""
        raise ValueError(f"{who}: {name} must be (images, labels) or None, got a "
                         f"{type(value).__name__}{size}")
    return value
