"""Continual-learning summaries of an accuracy matrix.

A[t, j] is the accuracy (%) on task j's test set after training task t; entries with j > t are
NaN (not evaluated). All summaries follow the usual definitions (Chaudhry et al. 2018; Lopez-Paz &
Ranzato 2017): average accuracy over seen tasks, forgetting = mean over earlier tasks of best past
accuracy minus final accuracy, backward transfer = mean of final minus just-learned accuracy,
learning accuracy = mean of the diagonal. A task without a test set is NaN in every row and
left out of each mean; a summary with nothing to average is NaN.
"""

import warnings

import numpy as np


def _nanmean(values):
    with warnings.catch_warnings():  # "mean of empty slice": the NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if np.size(values) else float("nan")


def average_accuracy(matrix, after_task=-1):
    return _nanmean(np.asarray(matrix, float)[after_task])


def forgetting(matrix):
    matrix = np.asarray(matrix, float)
    last = matrix.shape[0] - 1
    if last == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no test set
        best_past = np.nanmax(matrix[:last, :last], axis=0)
    return _nanmean(best_past - matrix[last, :last])


def backward_transfer(matrix):
    matrix = np.asarray(matrix, float)
    last = matrix.shape[0] - 1
    if last == 0:
        return 0.0
    return _nanmean(matrix[last, :last] - np.diag(matrix)[:last])


def learning_accuracy(matrix):
    return _nanmean(np.diag(np.asarray(matrix, float)))


def worst_learning_accuracy(matrix):
    """The lowest accuracy of a task right after it was trained (the newest task's share)."""
    return float(np.nanmin(np.diag(np.asarray(matrix, float))))


def summarize(matrix):
    return {"average": average_accuracy(matrix), "forgetting": forgetting(matrix),
            "backward_transfer": backward_transfer(matrix),
            "learning_accuracy": learning_accuracy(matrix)}
