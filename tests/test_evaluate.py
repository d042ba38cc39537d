"""Scoring whole generators on the digits benchmark under the study's protocol."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gansearch.benchmarks import load_benchmark
from gansearch.config import load_study, parse_study
from gansearch.evaluate import prepare_scorer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_config():
    data = {
        "name": "digits-small",
        "benchmark": "digits",
        "evaluation": {
            "num_samples": 400,
            "seeds": [0, 1],
            "batch_size": 200,
            "kid_subsets": 10,
            "kid_subset_size": 200,
            "latency": {"runs": 5, "warmup": 1},
        },
    }
    return parse_study(data)


@pytest.fixture(scope="module")
def benchmark(small_config):
    return load_benchmark(small_config)


class ReplayGenerator(nn.Module):
    """Returns real images picked by the latent: a 'perfect' generator of the data."""

    def __init__(self, real: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("real", real)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        index = (z.flatten(1)[:, 0].abs() * 1e6).long() % self.real.shape[0]
        return self.real[index]


class ConstantGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 1, 16, 16))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.bias).expand(z.shape[0], -1, -1, -1)


def test_real_data_scores_far_better_than_a_constant_and_than_nothing(
    small_config, benchmark
) -> None:
    scorer = prepare_scorer(benchmark, small_config)
    replay = scorer.score(ReplayGenerator(benchmark.real))
    constant = scorer.score(ConstantGenerator())
    teacher = scorer.score(benchmark.teacher)
    assert replay.values["fid"] < 0.05 * constant.values["fid"]
    assert teacher.values["fid"] < 0.5 * constant.values["fid"]
    assert replay.values["is"] > 5 * constant.values["is"]  # 10 balanced classes vs one
    assert abs(replay.values["kid"]) < 0.05 * constant.values["kid"]
    # the teacher is exact against itself; noise floors are reported per metric
    assert teacher.values["teacher_mse"] == 0.0 and teacher.values["teacher_psnr"] == 100.0
    assert set(teacher.spread) >= {"fid", "kid", "is", "latency_ms"}
    assert len(teacher.per_seed["fid"]) == 2


def test_scores_are_reproducible_for_the_same_protocol(small_config, benchmark) -> None:
    first = prepare_scorer(benchmark, small_config).score(benchmark.teacher)
    second = prepare_scorer(benchmark, small_config).score(benchmark.teacher)
    for name in ("fid", "kid", "is", "macs", "stored_bytes", "params", "bitops"):
        assert first.values[name] == second.values[name], name


def test_reference_features_are_cached_by_content(small_config, benchmark, tmp_path: Path) -> None:
    config = small_config.model_copy(
        update={"evaluation": small_config.evaluation.model_copy(update={"cache_dir": tmp_path})}
    )
    prepare_scorer(benchmark, config, teacher_fidelity=False)
    files = list(tmp_path.glob("ref-*.safetensors"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    prepare_scorer(benchmark, config, teacher_fidelity=False)
    assert files[0].stat().st_mtime_ns == stamp  # reused, not rewritten


@pytest.mark.slow
def test_evaluate_json_gives_finite_teacher_metrics(run_cli) -> None:
    result = run_cli("evaluate", str(ROOT / "studies" / "digits.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    metrics = payload["metrics"]
    for name in ("fid", "kid", "is", "macs", "params", "stored_bytes", "bitops", "latency_ms"):
        assert math.isfinite(metrics[name]["value"]), name
    for name in ("fid", "kid", "is"):
        assert metrics[name]["spread"] is not None and metrics[name]["spread"] >= 0
    assert metrics["fid"]["direction"] == "minimize" and metrics["is"]["direction"] == "maximize"
    assert metrics["stored_bytes"]["value"] >= 4 * metrics["params"]["value"]
    assert payload["protocol"]["seeds"] == list(
        load_study(ROOT / "studies" / "digits.yaml").evaluation.seeds
    )
