"""`python -m tools.convert` from a checkout: the sparcl-convert binary
(sparcl_tf/cli/convert.py)."""

import sys

from sparcl_tf.cli.convert import __doc__, run  # noqa: F401 (absl's --help reads __main__'s __doc__)

if __name__ == "__main__":
    sys.exit(run())
