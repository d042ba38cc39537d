"""Generator inputs: each kind draws deterministic batches, and paired data is scored
with PSNR/SSIM against its targets (known answers)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gansearch.compress.batches import as_inputs, chunks, draw, zeros_like
from gansearch.evaluators.objectives import Constraint
from gansearch.evaluators.scorer import Scorer, ScoringProtocol
from gansearch.inputs import ConditionalSource, FunctionSource, ImageSource, LatentSource

PROTOCOL = ScoringProtocol(
    seeds=(0, 1),
    batch_size=8,
    kid_subsets=2,
    kid_subset_size=4,
    latency_runs=3,
    latency_warmup=0,
    latency_threads=1,
    latency_batch_size=1,
)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, 6, 6), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_latents_are_the_seeded_normal_draws_of_before() -> None:
    source = LatentSource((4, 1, 1))
    (z,) = source.batch(5, seed=3).inputs
    assert torch.equal(z, torch.randn((5, 4, 1, 1), generator=torch.Generator().manual_seed(3)))
    assert source.batch(5, seed=3).targets is None and not source.paired
    assert not torch.equal(z, source.batch(5, seed=4).inputs[0])


def test_conditional_inputs_are_latents_and_labels_in_range() -> None:
    source = ConditionalSource((8,), num_classes=3)
    z, labels = source.batch(300, seed=0).inputs
    assert z.shape == (300, 8) and labels.dtype == torch.int64
    assert set(labels.tolist()) == {0, 1, 2}
    again = source.batch(300, seed=0).inputs
    assert torch.equal(again[1], labels) and source.names == ("z", "label")


def test_paired_draws_keep_inputs_and_targets_aligned() -> None:
    inputs = torch.arange(10.0).view(10, 1, 1, 1)
    source = ImageSource(inputs, -inputs)
    batch = source.batch(6, seed=1)
    assert batch.targets is not None and source.paired and source.kind == "paired"
    assert torch.equal(batch.targets, -batch.inputs[0])
    assert len(set(batch.inputs[0].flatten().tolist())) == 6  # without replacement
    bigger = source.batch(25, seed=1)  # more than the split holds: with replacement
    assert bigger.inputs[0].shape[0] == 25 and torch.equal(bigger.targets, -bigger.inputs[0])
    assert not ImageSource(inputs).paired


def test_paired_data_needs_one_target_per_input() -> None:
    with pytest.raises(ValueError, match="one target per input"):
        ImageSource(torch.zeros(4, 1, 2, 2), torch.zeros(3, 1, 2, 2))


def test_function_source_calls_the_users_function_with_n_and_seed() -> None:
    calls: list[tuple[int, int]] = []

    def function(n: int, seed: int) -> dict[str, object]:
        calls.append((n, seed))
        g = torch.Generator().manual_seed(seed)
        z = torch.randn((n, 3), generator=g)
        return {"inputs": (z, z.sign()), "targets": z.abs()}

    source = FunctionSource(function, "mine:function")
    assert source.paired and source.names == ("input0", "input1")
    batch = source.batch(4, seed=9)
    assert len(batch.inputs) == 2 and torch.equal(batch.targets, batch.inputs[0].abs())
    assert torch.equal(source.batch(4, seed=9).inputs[0], batch.inputs[0])
    assert calls[0] == (2, 0)  # the probe


def test_batch_helpers() -> None:
    inputs = as_inputs((torch.zeros(5, 2), torch.ones(5, dtype=torch.long)))
    assert [tuple(p.shape) for p in chunks(inputs, 2)[-1]] == [(1, 2), (1,)]
    zeros = zeros_like(inputs, 3)
    assert zeros[1].dtype == torch.long and zeros[0].shape == (3, 2)
    with pytest.raises(ValueError, match="share one batch dimension"):
        as_inputs((torch.zeros(5, 2), torch.zeros(4)))
    assert torch.equal(draw(LatentSource((2,)), 3, 7)[0], LatentSource((2,)).batch(3, 7).inputs[0])


def test_scorer_measures_psnr_and_ssim_against_targets() -> None:
    """Identity generator; targets = inputs + a known offset, so PSNR is known exactly."""
    offset = 0.1
    batches = {seed: _images(16, seed) for seed in (0, 1)}
    targets = {seed: images + offset for seed, images in batches.items()}
    scorer = Scorer(PROTOCOL, batches, None, None, targets=targets)
    score = scorer.score(nn.Identity())
    expected = 10 * math.log10(2.0**2 / offset**2)
    assert score.values["psnr"] == pytest.approx(expected, rel=1e-6)
    assert score.spread["psnr"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < score.values["ssim"] < 1.0
    exact = Scorer(PROTOCOL, batches, None, None, targets=batches).score(nn.Identity())
    assert exact.values["ssim"] == pytest.approx(1.0) and exact.values["psnr"] == 100.0


def test_scorer_runs_generators_with_several_inputs() -> None:
    class Conditional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(3, 4)

        def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return torch.tanh(z + self.embed(labels)).view(-1, 1, 2, 2)

    source = ConditionalSource((4,), num_classes=3)
    inputs = {seed: source.batch(8, seed).inputs for seed in (0, 1)}
    score = Scorer(PROTOCOL, inputs, None, None).score(Conditional())
    assert score.values["params"] == 12
    assert score.values["latency_ms"] > 0


def test_teacher_offset_constraints() -> None:
    drop = Constraint.parse("psnr >= teacher - 0.5")
    assert drop.threshold({"psnr": 30.0}) == 29.5 and str(drop) == "psnr >= teacher - 0.5"
    assert drop.violation({"psnr": 29.6}, {"psnr": 30.0}) < 0
    assert drop.violation({"psnr": 29.4}, {"psnr": 30.0}) > 0
    assert Constraint.parse("fid <= teacher + 2").threshold({"fid": 10.0}) == 12.0
    assert Constraint.parse("fid <= 1.1 * teacher").threshold({"fid": 10.0}) == pytest.approx(11)
    with pytest.raises(ValueError, match="not a finite number"):
        Constraint.parse("psnr >= teacher - 1e999")
