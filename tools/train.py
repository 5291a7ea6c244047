"""`python -m tools.train` from a checkout: the sparcl-train binary
(sparcl_tf/cli/train.py)."""

import sys

from sparcl_tf.cli.train import __doc__, run  # noqa: F401 (absl's --help reads __main__'s __doc__)

if __name__ == "__main__":
    sys.exit(run())
