"""Distribution metrics of generated images: FID, KID, IS, and their noise floor.

Each compares a set of generated images with a set of real ones through features or
logits that the caller has already produced. Everything here is plain torch/numpy on
tensors; nothing touches Optuna, the network or any global random state: the one
randomised metric (:func:`kid`) takes its own ``np.random.Generator``. Metrics that
compare two images pixel by pixel are in :mod:`gansearch.evaluators.fidelity`; the
on-disk cache of the real images' features is in
:mod:`gansearch.evaluators.reference_cache`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GaussianStats",
    "MeanSpread",
    "feature_matrix",
    "fid",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "kid",
    "polynomial_kernel",
    "summarize",
]


# --------------------------------------------------------------------------- FID


@dataclass(frozen=True, eq=False)
class GaussianStats:
    """Mean and covariance of a feature set, as read-only float64 arrays.

    Attributes:
        mu: Mean, shape ``(D,)``.
        sigma: Sample covariance (``ddof=1``), shape ``(D, D)``.
        n: Number of feature vectors the statistics were computed from.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def __post_init__(self) -> None:
        mu = np.array(self.mu, dtype=np.float64)
        sigma = np.array(self.sigma, dtype=np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(
                f"`mu` must have shape (D,) and `sigma` shape (D, D), "
                f"but got ({mu.shape=}, {sigma.shape=})."
            )
        if self.n < 2:
            raise ValueError(f"`n >= 2` must hold, but got (n={self.n}).")
        mu.setflags(write=False)
        sigma.setflags(write=False)
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.mu.shape[0])


def feature_matrix(features: Tensor, name: str, *, min_rows: int = 2) -> np.ndarray:
    """Check a feature set and return it as a float64 NumPy array.

    Args:
        features: Tensor of shape ``(N, D)``.
        name: The argument's name, for error messages.
        min_rows: Smallest accepted ``N``.

    Returns:
        The features as a float64 CPU array of shape ``(N, D)``.

    Raises:
        TypeError: If ``features`` is not a tensor.
        ValueError: If the shape is wrong or a value is NaN or infinite.
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, but got {type(features).__name__}.")
    if features.ndim != 2 or features.shape[0] < min_rows or features.shape[1] < 1:
        raise ValueError(
            f"`{name}` must have shape (N, D) with N >= {min_rows} and D >= 1, "
            f"but got shape {tuple(features.shape)}."
        )
    array = features.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` must be finite, but contains NaN or inf.")
    return array


def gaussian_stats(features: Tensor) -> GaussianStats:
    """Fit a Gaussian (mean and sample covariance) to a set of feature vectors.

    Args:
        features: Tensor of shape ``(N, D)`` with ``N >= 2``.

    Returns:
        The float64 mean and covariance (``ddof=1``) of the rows.
    """
    array = feature_matrix(features, "features")
    mu = array.mean(axis=0)
    sigma = np.atleast_2d(np.cov(array, rowvar=False))
    return GaussianStats(mu=mu, sigma=sigma, n=int(array.shape[0]))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; tiny negative eigenvalues are clipped."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2.0)
    root = np.sqrt(np.clip(eigvals, 0.0, None))
    return (eigvecs * root) @ eigvecs.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet (2-Wasserstein) distance between two Gaussians.

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` as in Heusel et al.,
    "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium" (NeurIPS 2017). The trace of the matrix square root is computed as
    the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``S_a^{1/2} S_b S_a^{1/2}`` (which is similar to ``S_a S_b``), so no complex
    parts appear as they can with ``scipy.linalg.sqrtm``. Everything is float64 and
    the result is clamped at 0 to absorb round-off.

    Args:
        a: Statistics of the first feature set.
        b: Statistics of the second feature set.

    Returns:
        The non-negative distance.
    """
    if a.dim != b.dim:
        raise ValueError(f"`a.dim == b.dim` must hold, but got ({a.dim=}, {b.dim=}).")
    diff = a.mu - b.mu
    sqrt_a = _psd_sqrt(a.sigma)
    inner = sqrt_a @ b.sigma @ sqrt_a
    eigvals = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    trace_sqrt = float(np.sqrt(np.clip(eigvals, 0.0, None)).sum())
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def fid(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet Inception Distance between two feature sets (Heusel et al., NeurIPS 2017).

    "Inception" is nominal: any feature network works, and the values are only
    comparable between runs that use the same one.

    Args:
        features_a: Tensor of shape ``(N_a, D)``.
        features_b: Tensor of shape ``(N_b, D)``.

    Returns:
        :func:`frechet_distance` of the two fitted Gaussians.
    """
    return frechet_distance(gaussian_stats(features_a), gaussian_stats(features_b))


# --------------------------------------------------------------------------- KID


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's cubic polynomial kernel matrix ``(x . y / d + 1)^3`` in float64.

    In place and cubed by multiplication: NumPy's ``** 3`` on a large array is ~5x slower.
    """
    gram = x @ y.T
    gram /= x.shape[1]
    gram += 1.0
    return gram * gram * gram


def kid(
    features_a: Tensor,
    features_b: Tensor,
    *,
    subsets: int,
    subset_size: int,
    generator: np.random.Generator,
    kernel_bb: np.ndarray | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel.

    Binkowski et al., "Demystifying MMD GANs" (ICLR 2018). The kernel is
    ``k(x, y) = (x . y / d + 1)^3``; the within-set sums exclude their diagonals,
    so the estimate is unbiased and can be negative when both sets come from the
    same distribution. The estimate is averaged over ``subsets`` random subsets
    drawn without replacement.

    Args:
        features_a: Tensor of shape ``(N_a, D)``.
        features_b: Tensor of shape ``(N_b, D)``.
        subsets: Number of random subsets (>= 1).
        subset_size: Rows per subset; clipped to ``min(N_a, N_b)``.
        generator: Source of the subset draws; owned by the caller.
        kernel_bb: ``polynomial_kernel(b, b)`` when the caller already has it (it
            depends only on the reference set, so a scorer computes it once).

    Returns:
        ``(mean, std)`` over subsets; ``std`` uses ``ddof=1`` and is 0 for one subset.
    """
    if subsets < 1:
        raise ValueError(f"`subsets >= 1` must hold, but got ({subsets=}).")
    if subset_size < 2:
        raise ValueError(f"`subset_size >= 2` must hold, but got ({subset_size=}).")
    if not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"`generator` must be a np.random.Generator, but got {type(generator).__name__}."
        )
    x = feature_matrix(features_a, "features_a")
    y = feature_matrix(features_b, "features_b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Feature dimensions must match, but got ({x.shape[1]=}, {y.shape[1]=}).")
    m = min(subset_size, x.shape[0], y.shape[0])
    # Each kernel matrix is computed once over all rows; a subset's sums are then
    # quadratic forms of its 0/1 indicator vector, for all subsets in one product.
    # Same draws and same estimate as forming the subset matrices one by one.
    pick_x = np.zeros((subsets, x.shape[0]))
    pick_y = np.zeros((subsets, y.shape[0]))
    for i in range(subsets):
        pick_x[i, generator.choice(x.shape[0], size=m, replace=False)] = 1.0
        pick_y[i, generator.choice(y.shape[0], size=m, replace=False)] = 1.0
    k_xx = polynomial_kernel(x, x)
    if kernel_bb is not None and kernel_bb.shape != (y.shape[0], y.shape[0]):
        raise ValueError(
            f"`kernel_bb` must be ({y.shape[0]}, {y.shape[0]}), but got {kernel_bb.shape}."
        )
    k_yy = polynomial_kernel(y, y) if kernel_bb is None else kernel_bb
    k_xy = polynomial_kernel(x, y)

    def off_diagonal_sums(pick: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        return ((pick @ kernel) * pick).sum(axis=1) - pick @ np.diag(kernel)

    within = (off_diagonal_sums(pick_x, k_xx) + off_diagonal_sums(pick_y, k_yy)) / (m * (m - 1))
    estimates = within - 2.0 * ((pick_x @ k_xy) * pick_y).sum(axis=1) / (m * m)
    std = float(estimates.std(ddof=1)) if subsets > 1 else 0.0
    return float(estimates.mean()), std


# --------------------------------------------------------------------------- IS


def inception_score(logits: Tensor, *, splits: int = 1) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))``.

    Salimans et al., "Improved Techniques for Training GANs" (NeurIPS 2016).
    Computed in float64 from ``log_softmax`` so confident (large) logits do not
    overflow. As in the original code the rows are cut into ``splits`` contiguous
    chunks, ``p(y)`` is the chunk's marginal, and the spread is the population
    standard deviation (``ddof=0``) over chunks.

    Args:
        logits: Unnormalised class scores, shape ``(N, C)``.
        splits: Number of chunks, ``1 <= splits <= N``.

    Returns:
        ``(mean, std)`` of the per-chunk scores. Constant predictions give 1;
        confident predictions spread evenly over ``C`` classes give ``C``.
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[1] < 1:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"`logits` must be a tensor of shape (N, C), but got {shape}.")
    if not 1 <= splits <= logits.shape[0]:
        raise ValueError(f"`1 <= splits <= N` must hold, but got ({splits=}, N={logits.shape[0]}).")
    log_p = torch.log_softmax(logits.detach().to("cpu", torch.float64), dim=1)
    scores = []
    for chunk in torch.tensor_split(log_p, splits, dim=0):
        log_marginal = torch.logsumexp(chunk, dim=0) - math.log(chunk.shape[0])
        p = chunk.exp()
        # 0 * log 0 counts as 0 (a -inf logit would otherwise give NaN).
        terms = torch.where(p > 0, p * (chunk - log_marginal), torch.zeros_like(p))
        scores.append(math.exp(float(terms.sum(dim=1).mean())))
    values = np.asarray(scores)
    return float(values.mean()), float(values.std(ddof=0))


# --------------------------------------------------------------------------- noise floor


@dataclass(frozen=True)
class MeanSpread:
    """A metric measured several times (e.g. over latent seeds), reported as mean ± std.

    Attributes:
        mean: Arithmetic mean of ``values``.
        std: Sample standard deviation (``ddof=1``); 0 when ``n == 1``.
        n: Number of measurements.
        values: The measurements, in the order given.
    """

    mean: float
    std: float
    n: int
    values: tuple[float, ...]

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (n={self.n})"


def summarize(values: Iterable[float]) -> MeanSpread:
    """Mean and sample standard deviation of repeated measurements.

    Used to report the noise floor of a quality metric: each metric is computed for
    several latent seeds, and differences smaller than ``std`` are noise.

    Args:
        values: One or more measurements.

    Returns:
        The :class:`MeanSpread` of ``values``.
    """
    floats = tuple(float(v) for v in values)
    if not floats:
        raise ValueError("`values` must hold at least one measurement, but got none.")
    array = np.asarray(floats, dtype=np.float64)
    # Identical measurements (e.g. an infinite PSNR at every seed) have no spread.
    same = bool(np.all(array == array[0]))
    std = float(array.std(ddof=1)) if len(floats) > 1 and not same else 0.0
    return MeanSpread(mean=float(array.mean()), std=std, n=len(floats), values=floats)
