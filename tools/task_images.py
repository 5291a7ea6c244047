"""`python -m tools.task_images` from a checkout: the sparcl-task-images binary
(sparcl_tf/cli/task_images.py)."""

import sys

from sparcl_tf.cli.task_images import __doc__, run  # noqa: F401 (absl's --help reads __main__'s __doc__)

if __name__ == "__main__":
    sys.exit(run())
