"""What a benchmark writes: its markdown tables, the targets it checks, the accuracy-vs-FLOPs
plot."""

import os

from sparcl_tf.cli.benchmark.steps import best_litert_ms


def write_report(workdir, name, lines):
    """Writes `lines` to WORKDIR/`name` and prints them; the binary's exit code."""
    report = "\n".join(lines)
    with open(os.path.join(workdir, name), "w") as handle:
        handle.write(report + "\n")
    print(report)
    return 0

def pm(value, digits=2, scale=1.0):
    mean, std = value
    return f"{scale * mean:.{digits}f} +- {scale * std:.{digits}f}"

def ratio_text(value, digits):
    """A ratio's mean, with its spread where it has one (FLOPs ratios are the same every seed)."""
    mean, std = value
    spread = f" +- {std:.{digits}f}" if round(std, digits) else ""
    return f"{mean:.{digits}f}x{spread}"

def table(summary):
    lines = ["| preset | class-IL | vs DER++ | task-IL | forgetting | worst task when new | "
             "training FLOPs | FLOPs vs DER++ | FLOPs vs dense, same draws | wall-clock (s) | "
             "wall-clock vs DER++ | peak RSS (MiB) | data removed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for entry in summary.values():
        lines.append(
            f"| {entry['preset']} | {pm(entry['class_il'])} | {pm(entry['class_il_delta'])} | "
            f"{pm(entry['task_il'])} | {pm(entry['forgetting'])} | "
            f"{pm(entry['new_task_class_il'])} | "
            f"{entry['training_flops'][0]:.3g} | {ratio_text(entry['flops_ratio'], 1)} fewer | "
            f"{ratio_text(entry['same_draw_flops_ratio'], 1)} fewer | "
            f"{pm(entry['wall_clock_s'], 0)} | {ratio_text(entry['speedup'], 2)} faster | "
            f"{entry['peak_rss_mib'][0]:.0f} | {100 * entry['removed_fraction'][0]:.0f} % |")
    return "\n".join(lines)

def targets(summary, steps, litert=None, model="edge_cnn"):
    """The SparCL paper's claims, issue 15's accuracy bars and the on-device speed targets,
    checked against this benchmark's means over seeds (`summarize`)."""
    checks = []

    def check(name, measured, passed):
        checks.append({"target": name, "measured": measured, "met": bool(passed)})

    for preset, label, bar in (("sparcl_derpp", "SparCL-DER++ 0.75", 1.0),
                               ("sparcl_derpp_90", "SparCL-DER++ 0.90", -0.5),
                               ("sparcl_derpp_s90", "structured SparCL-DER++ s90", -2.0)):
        if preset in summary:
            delta = summary[preset]["class_il_delta"]
            check(f"{label} class-IL >= DER++ {bar:+g} point{'s' * (abs(bar) != 1)}",
                  f"{pm(delta)} points", delta[0] >= bar)
    if "sparcl_derpp_95" in summary:
        ratio = summary["sparcl_derpp_95"]["flops_ratio"]
        check("SparCL-DER++ 0.95 training FLOPs >= 25x below DER++", f"{pm(ratio, 1)}x",
              ratio[0] >= 25)
    if "sparcl_derpp_s90" in summary:
        ratio = summary["sparcl_derpp_s90"]["speedup"]
        check("structured SparCL-DER++ s90 whole run >= 2.3x faster than DER++ (wall-clock)",
              f"{pm(ratio)}x", ratio[0] >= 2.3)
    if steps:
        dense = steps["dense DER++"]
        overhead = 100.0 * (steps["SparCL-DER++ 0.90 (masks + DGM)"] / dense - 1)
        check("train-step overhead of masks + DGM <= 10 %", f"{overhead:+.1f} %", overhead <= 10)
    limit = 1.5 if model == "resnet18" else 1.0
    best = {preset: best_litert_ms(entry) for preset, entry in (litert or {}).items()}
    for preset, ms in best.items():
        ratio = ms / litert[preset]["ms"]["TF kernels"]
        check(f"{preset}: LiteRT train step <= {limit}x TF's", f"{ratio:.2f}x", ratio <= limit)
    if "derpp" in best and "sparcl_derpp_s90" in best:
        ratio = best["derpp"] / best["sparcl_derpp_s90"]
        check("structured s90 LiteRT step >= 3x faster than dense", f"{ratio:.2f}x", ratio >= 3)
    return checks

def plot(summary, path):
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    figure = Figure(figsize=(9, 5), layout="constrained")
    axis = figure.subplots()
    markers, colors = "osD^v<>pPX*h", colormaps["tab20"]
    for index, entry in enumerate(summary.values()):
        (flops, flops_std), (accuracy, accuracy_std) = entry["training_flops"], entry["class_il"]
        axis.errorbar(flops, accuracy, xerr=flops_std, yerr=accuracy_std, fmt=markers[index % 12],
                      color=colors(index % 20), markersize=7, capsize=3,
                      label=f"{entry['preset']} ({accuracy:.1f} +- {accuracy_std:.1f} %)")
    seeds = next(iter(summary.values()))["seeds"]
    axis.set_xscale("log")
    axis.set(xlabel="training FLOPs (multiply-accumulates, log scale)",
             ylabel="class-IL accuracy (%)",
             title=f"Split Fashion-MNIST: accuracy vs training cost (mean +- std over "
                   f"{len(seeds)} seed{'s' * (len(seeds) > 1)})")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.savefig(path, dpi=120)
