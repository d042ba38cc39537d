"""Known-answer tests for the quality, fidelity and reference-cache metrics, and Inception."""

from __future__ import annotations

import math
import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from gansearch.errors import MetricUnavailableError
from gansearch.evaluators.fidelity import psnr, ssim, teacher_fidelity
from gansearch.evaluators.inception import load_inception_features
from gansearch.evaluators.quality import (
    GaussianStats,
    MeanSpread,
    fid,
    frechet_distance,
    gaussian_stats,
    inception_score,
    kid,
    summarize,
)
from gansearch.evaluators.reference_cache import cached_reference_features, content_hash


def _random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def _sample_gaussian(mu: np.ndarray, sigma: np.ndarray, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, mu.shape[0], generator=gen, dtype=torch.float64)
    chol = torch.from_numpy(np.linalg.cholesky(sigma))
    return torch.from_numpy(mu) + z @ chol.T


# ----------------------------------------------------------------------------- FID


def test_gaussian_stats_matches_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(50, 3, generator=gen)
    stats = gaussian_stats(features)
    array = features.double().numpy()
    assert stats.n == 50
    assert stats.mu.dtype == np.float64 and stats.sigma.shape == (3, 3)
    np.testing.assert_allclose(stats.mu, array.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(array, rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError):
        stats.mu[0] = 1.0  # read-only
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(torch.zeros(1, 3))


def test_fid_of_a_set_against_itself_is_zero() -> None:
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(400, 16, generator=gen) @ torch.randn(16, 16, generator=gen)
    scale = float(np.trace(gaussian_stats(features).sigma))
    assert fid(features, features) < 1e-6 * scale


def test_frechet_distance_diagonal_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.5, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    a = GaussianStats(mu=mu1, sigma=np.diag(s1), n=10)
    b = GaussianStats(mu=mu2, sigma=np.diag(s2), n=10)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_sqrtm_reference() -> None:
    rng = np.random.default_rng(2)
    dim = 6
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    s1, s2 = _random_spd(rng, dim), _random_spd(rng, dim)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    value = frechet_distance(GaussianStats(mu1, s1, 10), GaussianStats(mu2, s2, 10))
    assert value == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_singular_covariance_is_finite() -> None:
    # Fewer samples than dimensions: rank-deficient covariances, where sqrtm struggles.
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(8, 32, generator=gen)
    b = torch.randn(8, 32, generator=gen) + 0.5
    value = fid(a, b)
    assert math.isfinite(value) and value > 0
    assert fid(a, a) < 1e-8 * float(np.trace(gaussian_stats(a).sigma))


def test_fid_of_samples_approaches_closed_form() -> None:
    rng = np.random.default_rng(4)
    dim = 4
    mu1, mu2 = np.zeros(dim), np.array([1.0, -0.5, 0.0, 0.25])
    s1, s2 = np.diag([1.0, 2.0, 0.5, 1.0]), _random_spd(rng, dim) / dim
    exact = frechet_distance(GaussianStats(mu1, s1, 2), GaussianStats(mu2, s2, 2))
    a = _sample_gaussian(mu1, s1, 40_000, seed=5)
    b = _sample_gaussian(mu2, s2, 40_000, seed=6)
    assert fid(a, b) == pytest.approx(exact, rel=0.02)


def test_frechet_distance_rejects_dimension_mismatch() -> None:
    a = GaussianStats(np.zeros(2), np.eye(2), 5)
    b = GaussianStats(np.zeros(3), np.eye(3), 5)
    with pytest.raises(ValueError, match="a.dim == b.dim"):
        frechet_distance(a, b)


# ----------------------------------------------------------------------------- KID


def test_kid_same_distribution_is_unbiased() -> None:
    means = []
    for seed in range(30):
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(200, 8, generator=gen)
        b = torch.randn(200, 8, generator=gen)
        mean, _ = kid(a, b, subsets=20, subset_size=100, generator=np.random.default_rng(seed))
        means.append(mean)
    values = np.asarray(means)
    standard_error = values.std(ddof=1) / math.sqrt(len(values))
    assert abs(values.mean()) < 4 * standard_error
    assert (values < 0).any()  # an unbiased estimator dips below zero; a biased one does not


def test_kid_shifted_distribution_is_clearly_positive() -> None:
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(300, 8, generator=gen)
    b = torch.randn(300, 8, generator=gen) + 1.0
    mean, std = kid(a, b, subsets=20, subset_size=100, generator=np.random.default_rng(0))
    assert mean > 0.5
    assert mean > 5 * std


def test_kid_is_deterministic_per_generator_and_clips_subset_size() -> None:
    gen = torch.Generator().manual_seed(8)
    a, b = torch.randn(40, 4, generator=gen), torch.randn(30, 4, generator=gen)
    first = kid(a, b, subsets=5, subset_size=1000, generator=np.random.default_rng(3))
    second = kid(a, b, subsets=5, subset_size=1000, generator=np.random.default_rng(3))
    assert first == second
    assert math.isfinite(first[0]) and first[1] >= 0
    with pytest.raises(ValueError, match="subsets >= 1"):
        kid(a, b, subsets=0, subset_size=10, generator=np.random.default_rng(0))


def _naive_kid(
    a: np.ndarray, b: np.ndarray, subsets: int, m: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Unbiased MMD^2 written out term by term (Binkowski et al. 2018, Eq. 4)."""
    d = a.shape[1]

    def k(x: np.ndarray, y: np.ndarray) -> float:
        return (sum(float(p) * float(q) for p, q in zip(x, y, strict=True)) / d + 1.0) ** 3

    estimates = []
    for _ in range(subsets):
        xs = a[rng.choice(len(a), size=m, replace=False)]
        ys = b[rng.choice(len(b), size=m, replace=False)]
        xx = sum(k(xs[i], xs[j]) for i in range(m) for j in range(m) if i != j)
        yy = sum(k(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j)
        xy = sum(k(xs[i], ys[j]) for i in range(m) for j in range(m))
        estimates.append(xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m))
    mean = sum(estimates) / subsets
    std = math.sqrt(sum((e - mean) ** 2 for e in estimates) / (subsets - 1))
    return mean, std


@pytest.mark.parametrize(("rows_a", "rows_b", "subset_size"), [(15, 12, 8), (9, 11, 50)])
def test_kid_matches_naive_unbiased_mmd(rows_a: int, rows_b: int, subset_size: int) -> None:
    gen = torch.Generator().manual_seed(12)
    a = torch.randn(rows_a, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(rows_b, 5, generator=gen, dtype=torch.float64) * 1.5 + 0.2
    mean, std = kid(a, b, subsets=4, subset_size=subset_size, generator=np.random.default_rng(5))
    m = min(subset_size, rows_a, rows_b)  # the second case clips the subset size to 9
    expected = _naive_kid(a.numpy(), b.numpy(), 4, m, np.random.default_rng(5))
    assert mean == pytest.approx(expected[0], rel=1e-10, abs=1e-12)
    assert std == pytest.approx(expected[1], rel=1e-10, abs=1e-12)


# ----------------------------------------------------------------------------- IS


def test_inception_score_constant_predictions_is_one() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]]).repeat(64, 1)
    mean, std = inception_score(logits)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == 0.0


def test_inception_score_confident_uniform_predictions_is_num_classes() -> None:
    classes = 10
    labels = torch.arange(200) % classes
    logits = 1e4 * torch.nn.functional.one_hot(labels, classes).float()  # no overflow
    mean, std = inception_score(logits, splits=2)
    assert mean == pytest.approx(classes, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_partial_confidence_is_between_bounds() -> None:
    gen = torch.Generator().manual_seed(9)
    mean, _ = inception_score(torch.randn(100, 5, generator=gen))
    assert 1.0 < mean < 5.0
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.zeros(3, 2), splits=4)


# ----------------------------------------------------------------------------- PSNR / SSIM


def test_psnr_hand_computed() -> None:
    x = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    y = torch.full((2, 3, 4, 4), 0.1, dtype=torch.float64)
    assert psnr(x, y, data_range=2.0) == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-9)
    assert psnr(x, x, data_range=2.0) == 100.0  # the ceiling (libvpx/libaom MAX_PSNR)
    with pytest.raises(ValueError, match="data_range > 0"):
        psnr(x, y, data_range=0.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(x, y[:1], data_range=2.0)


def test_ssim_identical_is_one_and_decreases_with_noise() -> None:
    gen = torch.Generator().manual_seed(10)
    x = torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1
    noise = torch.randn(x.shape, generator=gen)
    assert ssim(x, x, data_range=2.0) == pytest.approx(1.0, abs=1e-12)
    scores = [ssim(x, x + level * noise, data_range=2.0) for level in (0.05, 0.2, 0.5)]
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_ssim_constant_images_closed_form() -> None:
    # Flat images: variances and covariance vanish, only the luminance term is left.
    a, b, data_range = 0.0, 0.5, 2.0
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1) * (c2 / c2)
    x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    assert ssim(x, y, data_range=data_range) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="window_size"):
        ssim(x[..., :5, :5], y[..., :5, :5], data_range=data_range)


def test_teacher_fidelity_values() -> None:
    teacher = torch.zeros(2, 1, 8, 8)
    student = teacher + 0.1
    result = teacher_fidelity(student, teacher)
    assert set(result) == {"teacher_l1", "teacher_mse", "teacher_psnr"}
    assert result["teacher_l1"] == pytest.approx(0.1, rel=1e-6)
    assert result["teacher_mse"] == pytest.approx(0.01, rel=1e-6)
    assert result["teacher_psnr"] == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-6)
    assert teacher_fidelity(teacher, teacher)["teacher_psnr"] == 100.0  # capped, finite


# ----------------------------------------------------------------------------- summarize


def test_summarize() -> None:
    spread = summarize([1.0, 2.0, 3.0])
    assert spread == MeanSpread(mean=2.0, std=1.0, n=3, values=(1.0, 2.0, 3.0))
    assert summarize(iter([4.5])) == MeanSpread(mean=4.5, std=0.0, n=1, values=(4.5,))
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


# ----------------------------------------------------------------------------- cache


def test_content_hash() -> None:
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert content_hash(t) == content_hash(t.T.contiguous().T.clone())
    assert content_hash(t.T) != content_hash(t)  # shape is part of the hash
    assert content_hash(t) != content_hash(t.double())  # dtype too
    assert content_hash("ab", "c") != content_hash("a", "bc")
    assert content_hash(b"x") != content_hash("x")
    assert len(content_hash()) == 64


class _Counter:
    def __init__(self, features: torch.Tensor) -> None:
        self.calls = 0
        self.features = features

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.features


def test_cached_reference_features(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(11)
    compute = _Counter(torch.randn(20, 5, generator=gen, dtype=torch.float64))
    parts = {"images": torch.ones(2, 2), "net": b"weights", "protocol": "fid-v1"}

    first = cached_reference_features(parts, compute, tmp_path)
    assert compute.calls == 1
    assert first.features.dtype == torch.float32 and first.features.shape == (20, 5)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"ref-{first.key[:16]}.safetensors"]  # no temp files left behind

    reordered = dict(reversed(list(parts.items())))
    second = cached_reference_features(reordered, compute, tmp_path)
    assert compute.calls == 1
    assert second.key == first.key
    torch.testing.assert_close(second.features, first.features)
    np.testing.assert_allclose(second.stats.sigma, first.stats.sigma)

    cached_reference_features({**parts, "protocol": "fid-v2"}, compute, tmp_path)
    assert compute.calls == 2

    (tmp_path / files[0]).write_bytes(b"not a safetensors file")
    third = cached_reference_features(parts, compute, tmp_path)
    assert compute.calls == 3
    torch.testing.assert_close(third.features, first.features)
    cached_reference_features(parts, compute, tmp_path)
    assert compute.calls == 3  # the corrupt file was overwritten with a good one


# ----------------------------------------------------------------------------- Inception


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name lookup or connection tried during the test; each one fails at once.

    The loader must refuse before touching the network (a refused download is what makes
    it fail fast on a machine without network, rather than waiting for a timeout).
    """
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args))
        raise OSError("network access in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def _assert_one_line_error(call, match: str) -> str:
    with pytest.raises(MetricUnavailableError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_inception_missing_weights_file(tmp_path: Path, network_attempts: list[str]) -> None:
    missing = tmp_path / "pt_inception.pth"
    message = _assert_one_line_error(lambda: load_inception_features(missing), "never downloads")
    assert str(missing) in message
    assert network_attempts == []


def test_inception_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "pt_inception.pth"
    torch.save({"w": torch.zeros(1)}, weights)
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)  # import fails even if installed
    _assert_one_line_error(lambda: load_inception_features(weights), "pip install")


def test_inception_download_attempt_is_refused_without_network_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, network_attempts: list[str]
) -> None:
    weights = tmp_path / "pt_inception.pth"
    torch.save({"w": torch.zeros(1)}, weights)

    def downloading_builder(**kwargs: object) -> None:
        torch.hub.load_state_dict_from_url("https://example.invalid/inception.pth")

    package = types.ModuleType("pytorch_fid")
    module = types.ModuleType("pytorch_fid.inception")
    module._inception_v3 = downloading_builder  # type: ignore[attr-defined]
    package.inception = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pytorch_fid", package)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", module)
    original = torch.hub.load_state_dict_from_url

    _assert_one_line_error(lambda: load_inception_features(weights), "tried to download")
    assert torch.hub.load_state_dict_from_url is original  # guard undone afterwards
    assert network_attempts == []  # refused before any name lookup or connection


def test_kid_with_precomputed_reference_kernel_is_identical() -> None:
    from gansearch.evaluators.quality import kid, polynomial_kernel

    generator = torch.Generator().manual_seed(7)
    a = torch.randn(120, 6, generator=generator)
    b = torch.randn(150, 6, generator=generator) + 0.3
    plain = kid(a, b, subsets=7, subset_size=50, generator=np.random.default_rng(1))
    kernel = polynomial_kernel(b.double().numpy(), b.double().numpy())
    cached = kid(
        a, b, subsets=7, subset_size=50, generator=np.random.default_rng(1), kernel_bb=kernel
    )
    assert plain == pytest.approx(cached, rel=1e-12)
    with pytest.raises(ValueError, match="kernel_bb"):
        kid(
            a,
            b,
            subsets=2,
            subset_size=50,
            generator=np.random.default_rng(1),
            kernel_bb=kernel[:10, :10],
        )
