"""The loaded form of a study's model and data: :class:`Benchmark`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gansearch.compress.batches import Inputs
from gansearch.inputs import InputSource


@dataclass(frozen=True)
class Benchmark:
    """A loaded teacher and everything needed to score it and its students.

    Attributes:
        name: benchmark name (or the study name for a custom model).
        teacher: the generator to compress, in eval mode.
        discriminator: its discriminator (for distillation), if any.
        real: reference images (the configured split), in the generator's output range;
            for paired data, the targets of the evaluation split.
        features: network mapping images to ``(features, logits)``, if any.
        inputs: what the generator consumes on the evaluation split (:mod:`gansearch.inputs`).
        train_inputs: the same on the training split (distillation, calibration, supernet).
        data_range: max - min of the output range (2.0 for Tanh).
    """

    name: str
    teacher: nn.Module
    discriminator: nn.Module | None
    real: torch.Tensor
    features: nn.Module | None
    inputs: InputSource
    train_inputs: InputSource
    data_range: float = 2.0

    def example_input(self, batch_size: int = 1) -> Inputs:
        """``batch_size`` evaluation inputs at seed 0 (for tracing and cost counting)."""
        return self.inputs.batch(batch_size, seed=0).inputs
