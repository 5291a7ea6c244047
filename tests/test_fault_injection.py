"""Twenty SIGKILLs at random moments of a short run, many inside checkpoint writes: every resume
ends with the results of the uninterrupted run (tests/fault_driver.py does the killing)."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KILLS = 20


def test_twenty_random_sigkills_all_resume_to_the_uninterrupted_results(idx_folder, tmp_path):
    ran = subprocess.run([sys.executable, os.path.join(HERE, "fault_driver.py"), idx_folder,
                          str(tmp_path), str(KILLS), "0"], capture_output=True, text=True,
                         timeout=900)
    assert ran.returncode == 0, ran.stderr[-2000:]
    summary = json.loads(ran.stdout.strip().splitlines()[-1])
    assert summary["kills"] == KILLS and summary["failures"] == 0, summary
    assert summary["kills_inside_a_save"] >= 1, summary  # the kills did reach the save windows
    assert summary["equal_runs"] == summary["runs"] >= 1, summary
