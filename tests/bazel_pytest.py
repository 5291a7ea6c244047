"""Runs one pytest file for `bazel test`, with the project's .venv (from tools/setup.sh).

Bazel's runfiles are symlinks into the source tree, so the real path of this file names the
project root; pytest runs there with the venv's interpreter, writing only to Bazel's test tmpdir.
"""

import os
import sys

root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
python = os.path.join(root, ".venv", "bin", "python")
if not os.path.exists(python):
    sys.exit(f"{python} is missing: run `bash tools/setup.sh` in {root} first")
basetemp = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), "pytest")
env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
os.chdir(root)
os.execve(python, [python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   f"--basetemp={basetemp}", *sys.argv[1:]], env)
