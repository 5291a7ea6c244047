"""`python -m tools.micro` from a checkout: the sparcl-micro binary
(sparcl_tf/cli/micro.py)."""

import sys

from sparcl_tf.cli.micro import __doc__, run  # noqa: F401 (absl's --help reads __main__'s __doc__)

if __name__ == "__main__":
    sys.exit(run())
