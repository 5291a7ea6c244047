"""Importing the library leaves the user's process alone: no binaries' code, no plotting module
of ours, and matplotlib's backend as the user chose it."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = """
import json, sys
import matplotlib
matplotlib.use("svg")
import sparcl_tf.keras
for name in sparcl_tf.keras.__all__:
    getattr(sparcl_tf.keras, name)
print(json.dumps({"backend": matplotlib.get_backend(),
                  "ours": sorted(m for m in sys.modules if m == "tools" or m.startswith(
                      ("tools.", "sparcl_tf.reporting.plots")))}))
"""


def test_importing_every_public_name_loads_no_binary_or_plotting_code():
    ran = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen == {"backend": "svg", "ours": []}
