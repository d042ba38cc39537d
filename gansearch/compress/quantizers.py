"""The numeric quantisers behind the weight encodings: they fit codes and their scales.

Each works on a weight already viewed as rows, one per output channel (see
:func:`gansearch.compress.encodings.to_rows`), and returns float codes plus the float16
parameters that are stored; :mod:`gansearch.compress.encodings` packs and decodes them,
and :mod:`gansearch.compress.fakequant` reuses them for simulated quantisation.

* Affine (``int2`` .. ``int8``), survey Eq. 9-10: ``w_q = scale * code + zero`` with
  unsigned codes ``0 .. 2**b - 1``. ``zero`` is a float16 *offset* (the value that code 0
  decodes to), not an integer zero-point, exactly as in Eq. 10 of the survey; ``scale`` is
  float16 too. Both are fitted to minimise the mean squared error (the objective of QGAN,
  Wang 2019): a vectorised grid search over clipping ranges shrinking ``[min, max]``
  towards its centre, refined by a few alternating (EM-like) steps that refit ``scale,
  zero`` by least squares given the codes and then re-round the codes.
* Binary: ``sign(w) * mean|w|`` per output channel (XNOR-Net, Rastegari et al. 2016, as
  used by ApGAN). Zero weights count as positive.
* Ternary: ``{-a, 0, +a}`` per output channel with threshold ``0.7 * mean|w|`` and ``a``
  the mean magnitude of the weights above it (Li & Liu, Ternary Weight Networks 2016).
  Codes 0 -> ``-a``, 1 -> 0, 2 -> ``+a``.
* Codebook: k-means weight sharing over the whole layer (Han et al., Deep Compression,
  ICLR 2016), linear initialisation over ``[min, max]``, exact 1-D Lloyd iterations on the
  sorted weights. If the layer has at most ``k`` distinct values, the centroids are those
  values, so decoding is exact up to the float16 rounding of the centroids.

Every fit is deterministic.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_TINY = 1e-30


def _float16_round(x: Tensor) -> Tensor:
    return x.to(torch.float16).to(torch.float32)


# --------------------------------------------------------------------------- affine (int2..int8)


def _per_row(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-row tensor ``(rows,)`` / ``(rows, c)`` to broadcast against ``like``."""
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))


def affine_codes(rows: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """Eq. 9: ``clamp(round((w - zero) / scale), 0, 2**bits - 1)`` per row, as float codes.

    ``scale`` and ``zero`` have one entry per row. A zero scale (a constant channel, or
    one whose range underflows float16) decodes every code to ``zero``.
    """
    levels = float((1 << bits) - 1)
    safe_scale = torch.clamp(_per_row(scale, rows), min=_TINY)
    return torch.clamp(torch.round((rows - _per_row(zero, rows)) / safe_scale), 0.0, levels)


def affine_decode(codes: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """Eq. 10: ``scale * code + zero`` per row."""
    return codes * _per_row(scale, codes) + _per_row(zero, codes)


def _affine_sse(rows: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """Per-row (and per-candidate) sum of squared errors of the affine grid."""
    decoded = affine_decode(affine_codes(rows, scale, zero, bits), scale, zero)
    return ((decoded - rows) ** 2).sum(dim=-1)


def _best_clipping(
    rows: Tensor, bits: int, ratios: Tensor, centre: Tensor, half: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Score ranges ``centre +- ratio * half`` (``ratios``: (rows, R)); best per row.

    Returns ``(sse, scale, zero, ratio)`` of the best candidate of every row.
    """
    levels = float((1 << bits) - 1)
    lo = centre[:, None] - ratios * half[:, None]
    scale = _float16_round(2 * ratios * half[:, None] / levels)
    zero = _float16_round(lo)
    err = torch.empty_like(scale)
    chunk = max(1, 2_000_000 // max(1, rows.numel()))
    for start in range(0, ratios.shape[1], chunk):
        part = slice(start, start + chunk)
        err[:, part] = _affine_sse(rows[:, None, :], scale[:, part], zero[:, part], bits)
    best = err.argmin(dim=1, keepdim=True)
    return tuple(t.gather(1, best)[:, 0] for t in (err, scale, zero, ratios))  # type: ignore[return-value]


def fit_affine(
    rows: Tensor, bits: int, *, num_candidates: int = 25, em_steps: int = 8
) -> tuple[Tensor, Tensor]:
    """Fit per-row ``(scale, zero)`` of an affine ``bits``-bit grid minimising the MSE.

    The objective is QGAN's (Wang, QGAN: Quantized Generative Adversarial Networks, 2019),
    which fits it by EM. Here, vectorised over rows: (1) a coarse grid of
    ``num_candidates`` clipping ranges ``centre +- r * half_range``, ``r`` from 1 (plain
    min/max, always a candidate) down to 0.04; (2) a fine grid of ``num_candidates``
    ratios around each row's best; (3) ``em_steps`` alternating steps that refit
    ``scale, zero`` by least squares given the codes, then re-round the codes. Every
    candidate is scored with float16-rounded parameters (what is stored) and the best one
    per row is kept, so the result is never worse than plain min/max.

    Returns:
        ``(scale, zero)``, float32 tensors of shape ``(rows,)`` holding float16 values.
    """
    rows = rows.to(torch.float32)
    low, high = rows.amin(dim=1), rows.amax(dim=1)
    centre, half = (low + high) / 2, (high - low) / 2
    coarse = torch.linspace(1.0, 1.0 / num_candidates, num_candidates, device=rows.device)
    _, _, _, best_ratio = _best_clipping(rows, bits, coarse.expand(rows.shape[0], -1), centre, half)
    step = (1.0 - 1.0 / num_candidates) / max(1, num_candidates - 1)
    offsets = torch.linspace(-step, step, num_candidates, device=rows.device)
    fine = torch.clamp(best_ratio[:, None] + offsets[None, :], 0.01, 1.0)
    fine[:, 0] = 1.0  # keep plain min/max in the running
    best_err, best_scale, best_zero, _ = _best_clipping(rows, bits, fine, centre, half)

    mean_w = rows.mean(dim=1)
    for _ in range(em_steps):
        codes = affine_codes(rows, best_scale, best_zero, bits)
        mean_q = codes.mean(dim=1)
        centred_q = codes - mean_q[:, None]
        var_q = (centred_q**2).mean(dim=1)
        cov = (centred_q * (rows - mean_w[:, None])).mean(dim=1)
        ok = (var_q > 0) & (cov > 0)
        scale = _float16_round(torch.where(ok, cov / torch.clamp(var_q, min=_TINY), best_scale))
        zero = _float16_round(torch.where(ok, mean_w - scale * mean_q, best_zero))
        err = _affine_sse(rows, scale, zero, bits)
        better = err < best_err
        if not bool(better.any()):
            break
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero


# --------------------------------------------------------------------------- binary / ternary


def binary_scale(rows: Tensor) -> Tensor:
    """XNOR-Net scale ``alpha = mean|w|`` per row, float16-rounded (Rastegari et al. 2016)."""
    return _float16_round(rows.abs().mean(dim=1))


def binary_codes(rows: Tensor) -> Tensor:
    """1 where ``w >= 0`` else 0 (float codes)."""
    return (rows >= 0).to(rows.dtype)


def binary_decode(codes: Tensor, scale: Tensor) -> Tensor:
    return (2 * codes - 1) * scale.reshape(-1, 1)


def ternary_fit(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Ternary Weight Networks (Li & Liu 2016): codes in {0, 1, 2} and scale per row.

    Threshold ``delta = 0.7 * mean|w|``; ``a`` = mean ``|w|`` over ``|w| > delta`` (0 if
    none); code 0 -> ``-a``, 1 -> 0, 2 -> ``+a``.
    """
    magnitude = rows.abs()
    delta = 0.7 * magnitude.mean(dim=1, keepdim=True)
    kept = (magnitude > delta).to(rows.dtype)
    count = kept.sum(dim=1)
    scale = (magnitude * kept).sum(dim=1) / torch.clamp(count, min=1)
    codes = 1 + torch.sign(rows) * kept
    return codes, _float16_round(scale)


def ternary_decode(codes: Tensor, scale: Tensor) -> Tensor:
    return (codes - 1) * scale.reshape(-1, 1)


# --------------------------------------------------------------------------- codebook


def fit_codebook(values: Tensor, k: int, *, max_iter: int = 200, tol: float = 1e-7) -> Tensor:
    """Sorted float16-valued centroids of 1-D k-means (Han et al., Deep Compression 2016).

    Linear initialisation over ``[min, max]`` (Han et al.'s recommendation), then Lloyd
    iterations done exactly on the sorted values with prefix sums (each iteration costs
    ``O(k log n)``, in NumPy float64), until the assignment repeats, no centroid moves
    more than ``tol * (max - min)``, or ``max_iter`` iterations. Deterministic; an empty
    cluster keeps its centroid. With at most ``k`` distinct values the centroids are
    those values (padded by repeating the largest), so reconstruction is exact up to the
    float16 rounding of the centroids.

    Returns:
        float32 tensor of ``k`` non-decreasing, float16-representable centroids.
    """
    ordered = np.sort(values.detach().reshape(-1).to(torch.float64).cpu().numpy())
    if ordered.size == 0:
        return torch.zeros(k, dtype=torch.float32, device=values.device)
    distinct = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
    if distinct.size <= k:
        centroids = np.concatenate([distinct, np.repeat(distinct[-1], k - distinct.size)])
    else:
        prefix = np.concatenate([[0.0], np.cumsum(ordered)])
        centroids = np.linspace(ordered[0], ordered[-1], k)
        tolerance = tol * (ordered[-1] - ordered[0])
        previous = None
        for _ in range(max_iter):
            bounds = np.searchsorted(ordered, (centroids[1:] + centroids[:-1]) / 2)
            if previous is not None and np.array_equal(bounds, previous):
                break
            starts = np.concatenate([[0], bounds])
            ends = np.concatenate([bounds, [ordered.size]])
            counts = ends - starts
            means = (prefix[ends] - prefix[starts]) / np.maximum(counts, 1)
            updated = np.where(counts > 0, means, centroids)
            shift = np.abs(updated - centroids).max()
            centroids, previous = updated, bounds
            if shift <= tolerance:
                break
    result = torch.from_numpy(centroids.astype(np.float32)).to(values.device)
    return _float16_round(result)


def codebook_assign(values: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest centroid (``centroids`` sorted) for every value, int64."""
    centroids = centroids.to(torch.float32)
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    return torch.searchsorted(midpoints.contiguous(), values.to(torch.float32).contiguous())
