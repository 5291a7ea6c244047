"""tools.benchmark's report over seeds: means, sample standard deviations, paired ratios."""

import numpy as np
import pytest

from sparcl_tf.cli.benchmark import report, runs as benchmark_runs


def _run(class_il, flops, seconds):
    return {"class_il": class_il, "task_il": class_il + 20, "forgetting": 100 - class_il,
            "training_flops": flops, "wall_clock_s": seconds, "peak_rss_mib": 700.0,
            "removed_fraction": 0.3, "same_draw_flops_ratio": 9.0,
            "new_task_class_il": class_il - 30}


def test_summary_is_mean_and_sample_std_with_ratios_paired_by_seed():
    runs = {("derpp", 0): _run(80.0, 100.0, 10.0), ("derpp", 1): _run(76.0, 200.0, 30.0),
            ("sparcl_derpp_90", 0): _run(79.0, 10.0, 5.0),
            ("sparcl_derpp_90", 1): _run(74.0, 40.0, 10.0)}
    summary = benchmark_runs.summarize(runs, ["derpp", "sparcl_derpp_90"], [0, 1])
    sparse = summary["sparcl_derpp_90"]
    assert sparse["class_il"] == pytest.approx((76.5, np.std([79.0, 74.0], ddof=1)))
    assert sparse["class_il_delta"] == pytest.approx((-1.5, np.std([-1.0, -2.0], ddof=1)))
    # paired: 100 / 10 and 200 / 40, not the ratio of the means (150 / 25)
    assert sparse["flops_ratio"] == pytest.approx((7.5, np.std([10.0, 5.0], ddof=1)))
    assert sparse["speedup"] == pytest.approx((2.5, np.std([2.0, 3.0], ddof=1)))
    assert summary["derpp"]["class_il_delta"] == (0.0, 0.0)
    assert benchmark_runs.mean_std([3.0]) == (3.0, 0.0)  # one seed: no spread to report
    table = report.table(summary)
    assert "| sparcl_derpp_90 | 76.50 +- 3.54 | -1.50 +- 0.71 |" in table
    checks = {c["target"]: c for c in report.targets(summary, {})}
    check = checks["SparCL-DER++ 0.90 class-IL >= DER++ -0.5 points"]
    assert check["measured"] == "-1.50 +- 0.71 points" and not check["met"]


@pytest.mark.parametrize("values, message", [(["0", "x"], "must be integers"),
                                             (["1", "1"], "distinct"), (["-1"], "distinct")])
def test_bad_seeds_are_one_error_line(values, message, monkeypatch):
    import io

    from sparcl_tf.cli import app as cli
    errors = io.StringIO()
    monkeypatch.setattr(cli, "ERRORS", errors)
    with pytest.raises(SystemExit) as exit_info:
        benchmark_runs.parse_seeds(values)
    assert exit_info.value.code == 2
    assert errors.getvalue().count("\n") == 1 and message in errors.getvalue()


def test_a_runs_row_carries_the_same_draw_ratio_and_its_worst_new_task(tmp_path):
    import json
    folder = tmp_path / "derpp" / "seed_0"
    folder.mkdir(parents=True)
    (folder / "peak_rss.json").write_text(json.dumps({"peak_rss_mib": 700.0}))
    (folder / "results.json").write_text(json.dumps({
        "class_il": 60.0, "examples_removed": 0, "training_examples": 100,
        "training_flops": 10.0, "dense_training_flops": 75.0,
        "class_il_matrix": [[90.0, 0.0, 0.0], [40.0, 26.5, 0.0], [50.0, 30.0, 80.0]]}))
    row = benchmark_runs.run_preset("unused.py", "derpp", 0, str(tmp_path), [])
    assert row["same_draw_flops_ratio"] == 7.5 and row["new_task_class_il"] == 26.5
    table = report.table(benchmark_runs.summarize({("derpp", 0): dict(
        row, task_il=90.0, forgetting=5.0, wall_clock_s=3.0)}, ["derpp"], [0]))
    assert "| 26.50 +- 0.00 | 10 | 1.0x fewer | 7.5x fewer |" in table
