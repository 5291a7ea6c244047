"""The engine contract: what the task loop (`session.loop`) asks of whatever runs its steps.

The loop owns the session (order, replay, events, evaluation, checkpoints); an engine runs what it
is given. The Keras engine (`engines.keras`), the LiteRT engine (`engines.litert`) and the TFLM
head engine (`engines.tflm`) implement it; the Kotlin session implements the same plan on a
phone and the board's C task loop on a microcontroller.
"""

import abc
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np


class Engine(abc.ABC):
    """Runs a session's steps. `layer_names`: its sparse layers, in the plan's order."""

    layer_names: List[str]

    @abc.abstractmethod
    def train(self, inputs: Mapping[str, np.ndarray], refresh: bool) -> Mapping[str, Any]:
        """One step on host-made inputs (the exported `train` signature's); returns loss,
        logits, correct and gradient_density (per sparse layer)."""

    @abc.abstractmethod
    def update_masks(self, prune_to: Sequence[int], grow_to: Sequence[int],
                     seed: int) -> List[int]:
        """Prunes to and grows to the plan's counts with its growth seed; active units per
        sparse layer."""

    @abc.abstractmethod
    def active_units(self) -> List[int]:
        """Active units (weights or filter slots) per sparse layer now."""

    @abc.abstractmethod
    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """The evaluation forward of prepared inputs."""

    @abc.abstractmethod
    def variables(self) -> Dict[str, Any]:
        """Name -> variable-like (`assign`, `numpy`): everything the engine must checkpoint."""

    @abc.abstractmethod
    def results(self) -> Dict[str, Any]:
        """What only the engine knows for results.json (sparsity, size, runtime)."""

    def begin_task(self, task_index: int, reset_optimizer: bool) -> None:
        """A task starts; `reset_optimizer`: its optimizer state starts fresh."""

    def before_save(self) -> None:
        """Called before the loop saves `variables()` (bring them up to date)."""

    def after_restore(self) -> None:
        """Called after the loop restored `variables()` (push them where they run)."""

    def end_task(self, task_index: int) -> None:
        """A task ended (and was evaluated)."""
