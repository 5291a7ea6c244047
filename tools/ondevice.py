"""`python -m tools.ondevice` from a checkout: the sparcl-ondevice binary
(sparcl_tf/cli/ondevice.py)."""

import sys

from sparcl_tf.cli.ondevice import __doc__, run  # noqa: F401 (absl's --help reads __main__'s __doc__)

if __name__ == "__main__":
    sys.exit(run())
