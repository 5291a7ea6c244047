"""PNG plots of a run's results (matplotlib, no display needed).

Figures are made with matplotlib's object API, not pyplot: nothing here selects a backend or
keeps global figure state, so importing the library leaves a user's matplotlib as it was.
"""

import numpy as np
from matplotlib.figure import Figure


def plot_accuracy_matrices(results, path):
    """Heatmaps of the class-IL and task-IL accuracy matrices (row: after task, col: task)."""
    figure = Figure(figsize=(10, 4.4), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, key, title in ((axes[0], "class_il_matrix", "Class-IL"),
                             (axes[1], "task_il_matrix", "Task-IL")):
        matrix = np.array([[np.nan if v is None else v for v in row] for row in results[key]])
        image = axis.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
        for (row, col), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                axis.text(col, row, f"{value:.0f}", ha="center", va="center",
                          color="white" if value < 60 else "black", fontsize=8)
        axis.set(title=f"{title} accuracy (%)", xlabel="evaluated task",
                 ylabel="after training task", xticks=range(matrix.shape[1]),
                 yticks=range(matrix.shape[0]))
    figure.colorbar(image, ax=axes, shrink=0.8)
    figure.suptitle(f"{results['preset'] or results['method']} - {results['dataset']}")
    figure.savefig(path, dpi=110)


def plot_task_curves(results, path):
    """Accuracy of every task after each training task, plus the running average (class-IL)."""
    matrix = np.array([[np.nan if v is None else v for v in row]
                       for row in results["class_il_matrix"]])
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axis = figure.subplots()
    steps = np.arange(matrix.shape[0])
    for task in range(matrix.shape[1]):
        axis.plot(steps[task:], matrix[task:, task], marker="o", label=f"task {task}")
    evaluated = ~np.isnan(matrix)  # a task without a test set is NaN in every row
    average = np.where(evaluated.any(axis=1), np.nansum(matrix, axis=1) / np.maximum(
        evaluated.sum(axis=1), 1), np.nan)
    axis.plot(steps, average, color="black", linewidth=2.5, label="average")
    axis.set(xlabel="after training task", ylabel="class-IL accuracy (%)", ylim=(0, 100),
             xticks=steps, title=f"{results['preset'] or results['method']} - per-task accuracy")
    axis.legend(fontsize=7, ncol=2)
    figure.savefig(path, dpi=110)
