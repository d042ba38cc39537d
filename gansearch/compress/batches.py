"""Generator inputs as a tuple of tensors: the one calling convention of every stage.

A generator may take one latent tensor (DCGAN), latents and class labels (a
class-conditional generator, ``G(z, y)``), one image (pix2pix, CycleGAN, super-resolution)
or anything else a user's ``module:function`` yields. Every stage (calibration,
distillation, supernet training, scoring, latency, export) therefore holds a batch as
:data:`Inputs`, a tuple of tensors whose first dimension is the batch, and calls the
generator as ``generator(*inputs)``.

An :class:`InputSampler` draws such batches from a caller-owned ``torch.Generator``; the
study layer (:mod:`gansearch.inputs`) provides the samplers, so this module stays free of
configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

Inputs = tuple[Tensor, ...]
"""The positional arguments of one generator call; dimension 0 of each is the batch."""


class InputSampler(Protocol):
    """Draws generator input batches; all randomness comes from ``generator``."""

    def sample(self, n: int, generator: torch.Generator) -> Inputs:
        """``n`` inputs (a tuple of tensors with batch size ``n``)."""
        ...


def as_inputs(batch: Tensor | Sequence[Tensor]) -> Inputs:
    """``batch`` as a tuple of tensors (one tensor becomes a 1-tuple).

    Raises:
        TypeError: for anything but a tensor or a non-empty sequence of tensors.
        ValueError: when the tensors disagree on the batch size or have no batch dimension.
    """
    inputs = (batch,) if isinstance(batch, Tensor) else tuple(batch)
    if not inputs or not all(isinstance(part, Tensor) for part in inputs):
        raise TypeError(
            "generator inputs must be a torch.Tensor or a tuple of them, but got "
            f"{type(batch).__name__}"
        )
    sizes = {part.shape[0] if part.dim() else 0 for part in inputs}
    if 0 in sizes or len(sizes) != 1:
        shapes = [tuple(part.shape) for part in inputs]
        raise ValueError(
            "generator inputs must share one batch dimension (dim 0) of size >= 1, but got "
            f"shapes {shapes}"
        )
    return inputs


def chunks(inputs: Inputs, size: int) -> list[Inputs]:
    """``inputs`` split along the batch into pieces of at most ``size`` samples."""
    return [tuple(parts) for parts in zip(*(part.split(size) for part in inputs), strict=True)]


def to_device(inputs: Inputs, device: torch.device | str) -> Inputs:
    return tuple(part.to(device) for part in inputs)


def draw(sampler: InputSampler, n: int, seed: int) -> Inputs:
    """``n`` inputs from ``sampler`` with a fresh generator seeded by ``seed``."""
    return sampler.sample(n, torch.Generator().manual_seed(seed))


def zeros_like(inputs: Inputs, n: int = 2) -> Inputs:
    """A batch of ``n`` zero inputs of the same per-sample shapes and dtypes (for tracing)."""
    return tuple(torch.zeros((n, *part.shape[1:]), dtype=part.dtype) for part in inputs)
