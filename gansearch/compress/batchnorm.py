"""Post-hoc BatchNorm recalibration of a generator on seeded input batches.

Pruning a generator, or taking a sub-generator of a once-for-all supernet, shifts the
input distribution of every BatchNorm, and running statistics shared by all widths fit
none of them. Re-estimating the statistics on a few input batches (no training) is the
post-hoc BN calibration of Yu & Huang, "Universally Slimmable Networks and Improved
Training Techniques" (ICCV 2019).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gansearch.compress.batches import Inputs, InputSampler, as_inputs


def calibration_batches(
    sampler: InputSampler, batches: int, batch_size: int, seed: int
) -> list[Inputs]:
    """``batches`` input batches drawn from ``sampler`` with their own seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return [sampler.sample(batch_size, generator) for _ in range(batches)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Sequence[Inputs | Tensor]) -> nn.Module:
    """Recompute every BatchNorm's running statistics of ``model`` in place (no training).

    The statistics become the exact average over ``batches`` (cumulative moving average,
    ``momentum=None``), as in the post-hoc BN calibration of Yu & Huang (ICCV 2019).
    Only BatchNorm layers run in training mode; ``model`` is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        return model.eval()
    model.eval()
    momenta = []
    for norm in norms:
        momenta.append(norm.momentum)
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    try:
        for batch in batches:
            model(*as_inputs(batch))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    return model
