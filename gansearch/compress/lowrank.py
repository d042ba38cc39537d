"""Low-rank (truncated SVD) factorisation of Linear, Conv2d and ConvTranspose2d layers.

Following Denton et al., "Exploiting Linear Structure Within Convolutional Networks for
Efficient Evaluation" (NeurIPS 2014), a weight reshaped to a matrix ``M = U S V^T`` is
replaced by two thinner layers holding ``V' = sqrt(S_r) V_r^T`` and ``U' = U_r sqrt(S_r)``:

* ``Linear(in, out)`` -> ``Linear(in, r, bias=False)``, ``Linear(r, out)``;
  ``M = W`` of shape ``(out, in)``.
* ``Conv2d(in, out, k)`` -> ``Conv2d(in, r, k, stride, padding, dilation, bias=False)``,
  ``Conv2d(r, out, 1)``; ``M = W.reshape(out, in*kh*kw)``.
* ``ConvTranspose2d(in, out, k)`` (weight ``(in, out, kh, kw)``) ->
  ``ConvTranspose2d(in, r, k, stride, padding, output_padding, dilation, bias=False)``,
  ``Conv2d(r, out, 1)``; ``M = W.permute(1, 0, 2, 3).reshape(out, in*kh*kw)``. A 1x1
  convolution after a transposed convolution mixes output channels pixel by pixel, so the
  composition equals the original layer.

In every case the full rank is ``min(out, in*kh*kw)`` and factorising at full rank
reproduces the layer (up to float rounding). The bias moves to the second factor.
Grouped convolutions are not supported (:class:`LowRankError`); dilation is, since the
first factor keeps the spatial geometry.

The factorised layer is an ``nn.Sequential`` that takes the original layer's place, so
its factors are named ``f"{name}.0"`` and ``f"{name}.1"`` (see :func:`factor_names`).
"""

from __future__ import annotations

import torch
from torch import nn

from gansearch.errors import GansearchError


class LowRankError(GansearchError):
    """A rank or layer that low-rank factorisation does not support."""


def factor_names(layer: str) -> tuple[str, str]:
    """Qualified names of the two factors that replace ``layer``."""
    return (f"{layer}.0", f"{layer}.1")


def full_rank(layer: nn.Module) -> int:
    """``min(out, in*kh*kw)``: the largest rank :func:`factorize` accepts for ``layer``."""
    matrix_rows, matrix_cols = _matrix_shape(layer)
    return min(matrix_rows, matrix_cols)


def _matrix_shape(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Linear):
        return layer.out_features, layer.in_features
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        if layer.groups != 1:
            raise LowRankError(
                f"low-rank factorisation needs groups == 1, but got groups={layer.groups} "
                f"for {layer}."
            )
        kh, kw = layer.kernel_size
        return layer.out_channels, layer.in_channels * kh * kw
    raise LowRankError(
        f"low-rank factorisation supports Linear, Conv2d and ConvTranspose2d, "
        f"but got {type(layer).__name__}."
    )


def _weight_matrix(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight.detach()
    if isinstance(layer, nn.ConvTranspose2d):
        weight = weight.permute(1, 0, 2, 3)
    return weight.reshape(weight.shape[0], -1)


def factorize(layer: nn.Module, rank: int) -> nn.Sequential:
    """Split ``layer`` into two thinner layers of inner width ``rank`` (truncated SVD).

    Args:
        layer: A Linear, Conv2d or ConvTranspose2d with ``groups == 1``.
        rank: ``1 <= rank <= full_rank(layer)``.

    Returns:
        ``nn.Sequential(first, second)`` computing the best rank-``rank`` approximation of
        ``layer`` (in Frobenius norm of the weight matrix); same dtype and device.
    """
    full = full_rank(layer)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= full:
        raise LowRankError(
            f"`1 <= rank <= {full}` (the full rank min(out, in*kernel)) must hold, "
            f"but got {rank=} for {layer}."
        )
    weight = layer.weight
    matrix = _weight_matrix(layer).to(torch.float64)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    left = (u[:, :rank] * root).to(weight.dtype)  # (out, r)
    right = (root[:, None] * vh[:rank]).to(weight.dtype)  # (r, in*kh*kw)
    factory = {"device": weight.device, "dtype": weight.dtype}
    has_bias = layer.bias is not None

    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, rank, bias=False, **factory)
        second = nn.Linear(rank, layer.out_features, bias=has_bias, **factory)
        first_weight = right
        second_weight = left
    elif isinstance(layer, nn.Conv2d):
        first = nn.Conv2d(
            layer.in_channels,
            rank,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            bias=False,
            padding_mode=layer.padding_mode,
            **factory,
        )
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=has_bias, **factory)
        first_weight = right.reshape(rank, layer.in_channels, *layer.kernel_size)
        second_weight = left.reshape(layer.out_channels, rank, 1, 1)
    else:  # ConvTranspose2d
        first = nn.ConvTranspose2d(
            layer.in_channels,
            rank,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            output_padding=layer.output_padding,
            dilation=layer.dilation,
            bias=False,
            **factory,
        )
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=has_bias, **factory)
        first_weight = right.reshape(rank, layer.in_channels, *layer.kernel_size).permute(
            1, 0, 2, 3
        )
        second_weight = left.reshape(layer.out_channels, rank, 1, 1)

    with torch.no_grad():
        first.weight.copy_(first_weight)
        second.weight.copy_(second_weight)
        if has_bias:
            second.bias.copy_(layer.bias.detach())
    factorized = nn.Sequential(first, second)
    factorized.train(layer.training)
    return factorized
