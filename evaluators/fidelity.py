"""Paired image metrics: PSNR, SSIM and fidelity to the teacher.

Each compares two batches of images of the same shape element by element, e.g. a
compressed generator's outputs with its teacher's on the same latents. Everything is
computed in float64 on CPU copies; the inputs are not modified.

PSNR is capped at :data:`~gansearch.evaluators.objectives.PSNR_CEILING_DB` (100 dB, the
``MAX_PSNR`` of libvpx and libaom), so identical images score 100 dB, a finite number
that a study can store, compare and constrain, instead of infinity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gansearch.evaluators.objectives import PSNR_CEILING_DB

__all__ = ["psnr", "ssim", "teacher_fidelity"]


def _check_pair(x: Tensor, y: Tensor, data_range: float) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("`x` and `y` must be torch.Tensors.")
    if x.shape != y.shape:
        raise ValueError(
            f"`x.shape == y.shape` must hold, but got ({tuple(x.shape)}, {tuple(y.shape)})."
        )
    if x.numel() == 0:
        raise ValueError("`x` and `y` must not be empty.")
    if not data_range > 0 or not math.isfinite(data_range):
        raise ValueError(f"`data_range > 0` must hold, but got ({data_range=}).")


def _mse(x: Tensor, y: Tensor) -> float:
    diff = x.detach().to("cpu", torch.float64) - y.detach().to("cpu", torch.float64)
    return float(diff.square().mean())


def _psnr_from_mse(mse: float, data_range: float) -> float:
    if mse == 0.0:
        return PSNR_CEILING_DB
    return min(PSNR_CEILING_DB, 10.0 * math.log10(data_range**2 / mse))


def psnr(x: Tensor, y: Tensor, *, data_range: float) -> float:
    """Peak signal-to-noise ratio ``10 log10(range^2 / MSE)`` over the whole batch.

    The MSE is pooled over every element of the batch (not averaged per image). The result
    is capped at ``PSNR_CEILING_DB`` (100 dB, libvpx/libaom ``MAX_PSNR``).

    Args:
        x: Images, any shape.
        y: Reference images, same shape as ``x``.
        data_range: Width of the value range, e.g. 2.0 for images in ``[-1, 1]``.

    Returns:
        PSNR in dB, at most 100; exactly 100 when ``x`` and ``y`` are identical.
    """
    _check_pair(x, y, data_range)
    return _psnr_from_mse(_mse(x, y), data_range)


def _gaussian_window(size: int, sigma: float) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    window = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return window / window.sum()


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float,
    window_size: int = 7,
    sigma: float = 1.5,
) -> float:
    """Structural similarity, averaged over batch, channels and valid window positions.

    Wang et al., "Image Quality Assessment: From Error Visibility to Structural
    Similarity" (IEEE TIP 2004), with ``K1 = 0.01``, ``K2 = 0.03`` and a separable
    Gaussian window applied without padding ("valid"), so only windows that lie
    fully inside the image count. The default 7x7 window works for 16x16 images.

    Args:
        x: Images, shape ``(N, C, H, W)``.
        y: Reference images, same shape.
        data_range: Width of the value range, e.g. 2.0 for images in ``[-1, 1]``.
        window_size: Odd window side, at most ``min(H, W)``.
        sigma: Standard deviation of the Gaussian window in pixels.

    Returns:
        Mean SSIM; 1.0 for identical images.
    """
    _check_pair(x, y, data_range)
    if x.ndim != 4:
        raise ValueError(f"`x` must have shape (N, C, H, W), but got {tuple(x.shape)}.")
    height, width = x.shape[-2:]
    if window_size < 1 or window_size % 2 == 0 or window_size > min(height, width):
        raise ValueError(
            f"`window_size` must be odd and within 1..min(H, W), "
            f"but got ({window_size=}, H={height}, W={width})."
        )
    if not sigma > 0:
        raise ValueError(f"`sigma > 0` must hold, but got ({sigma=}).")
    channels = x.shape[1]
    g = _gaussian_window(window_size, sigma)
    kernel_h = g.view(1, 1, window_size, 1).repeat(channels, 1, 1, 1)
    kernel_w = g.view(1, 1, 1, window_size).repeat(channels, 1, 1, 1)

    def blur(t: Tensor) -> Tensor:
        t = F.conv2d(t, kernel_h, groups=channels)
        return F.conv2d(t, kernel_w, groups=channels)

    a = x.detach().to("cpu", torch.float64)
    b = y.detach().to("cpu", torch.float64)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean())


def teacher_fidelity(
    student: Tensor, teacher: Tensor, *, data_range: float = 2.0
) -> dict[str, float]:
    """How closely a compressed generator reproduces its teacher on the same latents.

    Args:
        student: Student outputs, e.g. ``(N, C, H, W)`` in ``[-1, 1]``.
        teacher: Teacher outputs for the same latents, same shape.
        data_range: Width of the value range (2.0 for ``[-1, 1]``).

    Returns:
        ``{"teacher_l1", "teacher_mse", "teacher_psnr"}``; for identical outputs
        ``0.0``, ``0.0`` and the 100 dB ceiling (every value finite).
    """
    _check_pair(student, teacher, data_range)
    diff = student.detach().to("cpu", torch.float64) - teacher.detach().to("cpu", torch.float64)
    mse = float(diff.square().mean())
    return {
        "teacher_l1": float(diff.abs().mean()),
        "teacher_mse": mse,
        "teacher_psnr": _psnr_from_mse(mse, data_range),
    }
