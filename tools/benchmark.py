"""`python -m tools.benchmark` from a checkout: the sparcl-benchmark binary
(sparcl_tf/cli/benchmark/main.py)."""

import sys

from sparcl_tf.cli.benchmark.main import __doc__, run  # noqa: F401 (absl's --help reads __doc__)

if __name__ == "__main__":
    sys.exit(run())
