"""Image-quality metrics: FID, KID, IS, PSNR, SSIM, fidelity to the teacher.

Everything here is plain torch/numpy/scipy on tensors that the caller has already
produced (features, logits or images). Nothing touches Optuna, the network or any
global random state: the one randomised metric (:func:`kid`) takes its own
``np.random.Generator``.

The module also holds the on-disk cache of reference features
(:func:`cached_reference_features`), keyed by a content hash of everything the
features depend on (:func:`content_hash`).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GaussianStats",
    "MeanSpread",
    "ReferenceFeatures",
    "cached_reference_features",
    "content_hash",
    "fid",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "kid",
    "psnr",
    "ssim",
    "summarize",
    "teacher_fidelity",
]

_CACHE_FORMAT_VERSION = "1"


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


def _features_2d(features: Tensor, name: str, *, min_rows: int = 2) -> np.ndarray:
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
    array = _features_2d(features, "features")
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
    x = _features_2d(features_a, "features_a")
    y = _features_2d(features_b, "features_b")
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


# --------------------------------------------------------------------------- paired metrics


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
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def psnr(x: Tensor, y: Tensor, *, data_range: float) -> float:
    """Peak signal-to-noise ratio ``10 log10(range^2 / MSE)`` over the whole batch.

    The MSE is pooled over every element of the batch (not averaged per image).

    Args:
        x: Images, any shape.
        y: Reference images, same shape as ``x``.
        data_range: Width of the value range, e.g. 2.0 for images in ``[-1, 1]``.

    Returns:
        PSNR in dB; ``math.inf`` when ``x`` and ``y`` are identical.
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
        ``{"teacher_l1", "teacher_mse", "teacher_psnr"}``; the PSNR is ``math.inf``
        when the outputs are identical.
    """
    _check_pair(student, teacher, data_range)
    diff = student.detach().to("cpu", torch.float64) - teacher.detach().to("cpu", torch.float64)
    mse = float(diff.square().mean())
    return {
        "teacher_l1": float(diff.abs().mean()),
        "teacher_mse": mse,
        "teacher_psnr": _psnr_from_mse(mse, data_range),
    }


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


# --------------------------------------------------------------------------- reference cache


def _tensor_bytes(tensor: Tensor) -> bytes:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def content_hash(*parts: bytes | str | Tensor) -> str:
    """SHA-256 hex digest over bytes, strings and tensors, in order.

    Tensors are hashed by dtype, shape and the raw bytes of their contiguous CPU
    copy, so equal tensors hash equally whatever their device or strides.

    Args:
        *parts: The values the hashed artifact depends on.

    Returns:
        64 hexadecimal characters.
    """
    hasher = hashlib.sha256()

    def _update(tag: bytes, payload: bytes) -> None:
        # Tag and length prefix keep the encoding unambiguous (b"ab" + b"c" != b"a" + b"bc").
        hasher.update(tag + len(payload).to_bytes(8, "little") + payload)

    for part in parts:
        if isinstance(part, Tensor):
            header = f"{part.dtype}|{tuple(part.shape)}".encode()
            _update(b"T", header)
            _update(b"D", _tensor_bytes(part))
        elif isinstance(part, str):
            _update(b"S", part.encode("utf-8"))
        elif isinstance(part, (bytes, bytearray, memoryview)):
            _update(b"B", bytes(part))
        else:
            raise TypeError(
                f"`parts` must be bytes, str or torch.Tensor, but got {type(part).__name__}."
            )
    return hasher.hexdigest()


@dataclass(frozen=True, eq=False)
class ReferenceFeatures:
    """Features of the real images, with their Gaussian statistics and cache key.

    Attributes:
        features: float32 CPU tensor of shape ``(N, D)`` (needed by KID).
        stats: :func:`gaussian_stats` of ``features`` (needed by FID).
        key: SHA-256 hex digest of everything the features depend on.
    """

    features: Tensor
    stats: GaussianStats
    key: str


def _reference_key(key_parts: Mapping[str, bytes | str | Tensor]) -> str:
    if not key_parts:
        raise ValueError("`key_parts` must name at least one input, but got none.")
    flat: list[bytes | str | Tensor] = []
    for name in sorted(key_parts):
        flat.extend((name, key_parts[name]))
    return content_hash(_CACHE_FORMAT_VERSION, *flat)


def _read_cached(path: Path, key: str) -> Tensor | None:
    """The cached features, or ``None`` when the file is missing, unreadable or stale."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("key") != key:
                return None
            features = handle.get_tensor("features")
    except Exception:  # noqa: BLE001 - any unreadable cache file is recomputed
        return None
    if features.ndim != 2 or features.shape[0] < 2 or features.dtype != torch.float32:
        return None
    return features


def _write_atomic(path: Path, features: Tensor, key: str) -> None:
    from safetensors.torch import save_file

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"features": features}, tmp_name, metadata={"key": key})
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def cached_reference_features(
    key_parts: Mapping[str, bytes | str | Tensor],
    compute: Callable[[], Tensor],
    cache_dir: Path,
) -> ReferenceFeatures:
    """Load the reference features from the cache, or compute and store them.

    The key is the SHA-256 over the key parts sorted by name (callers pass e.g. the
    real-image tensor, the feature network's state_dict bytes and the protocol
    string), so any change to an input gives a new file. The file
    ``cache_dir / f"ref-{key[:16]}.safetensors"`` holds the features and the full
    key in its metadata; it is written atomically (temporary file in the same
    directory, then ``os.replace``). A missing, corrupt or mismatching file is
    recomputed and overwritten.

    Args:
        key_parts: Named inputs the features depend on.
        compute: Produces the ``(N, D)`` features; called only on a cache miss.
        cache_dir: Directory of the cache; created if needed.

    Returns:
        The features, their Gaussian statistics and the key.
    """
    key = _reference_key(key_parts)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"ref-{key[:16]}.safetensors"

    features = _read_cached(path, key)
    if features is None:
        computed = compute()
        if not isinstance(computed, Tensor):
            raise TypeError(
                f"`compute` must return a torch.Tensor, but returned {type(computed).__name__}."
            )
        _features_2d(computed, "compute()")
        features = computed.detach().to("cpu", torch.float32).contiguous()
        _write_atomic(path, features, key)
    return ReferenceFeatures(features=features, stats=gaussian_stats(features), key=key)
