"""Deployment form: dequantised copy with BatchNorm folded, equal to the simulated model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gansearch.compress import CompressionPlan, LayerPlan, apply_plan, describe, magnitude_masks
from gansearch.compress.actquant import ActivationQuantizer
from gansearch.compress.deploy import DeploymentReport, deployment_copy
from gansearch.compress.importance import channel_importance
from gansearch.evaluators.scorer import Scorer, ScoringProtocol
from gansearch.zoo.models import DCGANGenerator
from tests.toy_models import toy_generator

TOY_INPUT = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
DCGAN_INPUT = torch.randn(8, 64, 1, 1, generator=torch.Generator().manual_seed(2))
TOLERANCE = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


def _with_running_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None:
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model.eval()


def _dcgan() -> DCGANGenerator:
    torch.manual_seed(0)
    return _with_running_stats(DCGANGenerator())


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def _types(model: nn.Module) -> dict[str, type]:
    return {name: type(m) for name, m in model.named_modules()}


class Unfoldable(nn.Module):
    """BatchNorms that must stay: after a residual add, after a conv whose output is
    reused, without running statistics; and one foldable pair for contrast."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.after_add = nn.BatchNorm2d(4)
        self.reused_conv = nn.ConvTranspose2d(4, 4, 3, padding=1, groups=2)
        self.after_reused = nn.BatchNorm2d(4)
        self.grouped = nn.ConvTranspose2d(4, 6, 4, 2, 1, groups=2, bias=False)
        self.grouped_norm = nn.BatchNorm2d(6)
        self.batch_stats = nn.BatchNorm2d(6, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = self.after_add(h + 1.0)
        r = self.reused_conv(h)
        h = self.after_reused(r) + r
        return self.batch_stats(self.grouped_norm(self.grouped(h)))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it (Sequential fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return h if h.sum() > 0 else -h


def test_toy_generator_folds_batchnorm_and_keeps_instancenorm() -> None:
    teacher = toy_generator()
    report = DeploymentReport()
    deployed = deployment_copy(teacher, report=report)
    assert report.tracer == "fx"
    assert sorted(report.folded) == [
        ("res.norm1", "res.conv1"),
        ("res.norm2", "res.conv2"),
        ("up_norm", "up"),
    ]
    assert isinstance(deployed.up_norm, nn.Identity)
    assert isinstance(deployed.side_norm, nn.InstanceNorm2d)
    assert not deployed.training
    assert _max_diff(deployed, teacher, TOY_INPUT) <= TOLERANCE


def test_unfoldable_batchnorms_remain() -> None:
    model = _with_running_stats(Unfoldable())
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    report = DeploymentReport()
    deployed = deployment_copy(model, report=report)
    assert report.folded == [("grouped_norm", "grouped")]  # ConvTranspose2d with groups
    assert isinstance(deployed.after_add, nn.BatchNorm2d)
    assert isinstance(deployed.after_reused, nn.BatchNorm2d)
    assert isinstance(deployed.batch_stats, nn.BatchNorm2d)
    assert _max_diff(deployed, model, x) <= TOLERANCE


def test_untraceable_forward_uses_the_sequential_rule() -> None:
    model = _with_running_stats(Untraceable())
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(4))
    report = DeploymentReport()
    deployed = deployment_copy(model, report=report)
    assert report.tracer == "sequential"
    assert report.folded == [("body.1", "body.0")]
    assert _max_diff(deployed, model, x) <= TOLERANCE


def test_dcgan_teacher_has_no_batchnorm_left() -> None:
    teacher = _dcgan()
    deployed = deployment_copy(teacher)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert all(isinstance(deployed.net[i], nn.Identity) for i in (1, 4, 7))
    assert all(p.is_contiguous() for p in deployed.parameters())
    assert _max_diff(deployed, teacher, DCGAN_INPUT) <= TOLERANCE


def _quantized_plan(structure, teacher) -> CompressionPlan:
    half = magnitude_masks(structure, channel_importance(teacher, structure, DCGAN_INPUT), 0.5)
    return CompressionPlan(
        masks=half,
        layers={
            "net.0": LayerPlan(weight="int4", activation_bits=8),
            "net.3": LayerPlan(rank=12, weight="int4", activation_bits=8),
            "net.6": LayerPlan(rank=8, weight="int4"),
            "net.9": LayerPlan(weight="int4"),
        },
    )


def _quantized(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _quantizer_outputs(model: nn.Module) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = []
    quantizers = [m for m in model.modules() if isinstance(m, ActivationQuantizer)]
    handles = [q.register_forward_hook(lambda m, i, o: outputs.append(o)) for q in quantizers]
    try:
        _quantized(model, DCGAN_INPUT)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def test_pruned_low_rank_int4_activation_quant_plan_matches_and_is_left_unchanged() -> None:
    teacher = _dcgan()
    structure = describe(teacher, DCGAN_INPUT)
    compressed = apply_plan(teacher, _quantized_plan(structure, teacher), DCGAN_INPUT)
    before_types = _types(compressed)
    before_state = {k: v.clone() for k, v in compressed.state_dict().items()}
    with torch.no_grad():
        before_output = compressed(DCGAN_INPUT)

    report = DeploymentReport()
    deployed = compressed.deployment_module(report=report)

    # net.1 feeds the quantised input of net.3: kept so the rounding sees identical values.
    assert report.kept_for_quantizers == ["net.1"]
    assert sorted(report.folded) == [("net.4", "net.3.1"), ("net.7", "net.6.1")]
    quantizers = [m for m in deployed.modules() if isinstance(m, ActivationQuantizer)]
    assert [q.bits for q in quantizers] == [8, 8]
    assert not any(".parametrizations." in name for name, _ in deployed.named_parameters())
    assert (_quantized(deployed, DCGAN_INPUT) - before_output).abs().max().item() <= TOLERANCE
    # every quantiser rounds exactly the values it rounds in the simulated model
    simulated = _quantizer_outputs(compressed)
    for rounded, expected in zip(_quantizer_outputs(deployed), simulated, strict=True):
        assert torch.equal(rounded, expected)

    # the compressed candidate is untouched (tree, tensors, outputs)
    assert _types(compressed) == before_types
    state = compressed.state_dict()
    assert state.keys() == before_state.keys()
    assert all(torch.equal(state[k], before_state[k]) for k in state)
    with torch.no_grad():
        assert torch.equal(compressed(DCGAN_INPUT), before_output)
    assert isinstance(compressed.deployment_module().net[4], nn.Identity)


def test_fold_before_quantizers_folds_everything() -> None:
    teacher = _dcgan()
    structure = describe(teacher, DCGAN_INPUT)
    compressed = apply_plan(teacher, _quantized_plan(structure, teacher), DCGAN_INPUT)
    report = DeploymentReport()
    deployed = compressed.deployment_module(fold_before_quantizers=True, report=report)
    assert report.kept_for_quantizers == []
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())


def test_low_rank_pair_is_merged_only_when_cheaper() -> None:
    teacher = _dcgan()
    structure = describe(teacher, DCGAN_INPUT)
    # net.3: ConvT(192 -> 96, 4x4); merged MACs 192*96*16 < r*(192*16 + 96) for r >= 93
    plan = CompressionPlan(layers={"net.3": LayerPlan(rank=95), "net.6": LayerPlan(rank=24)})
    compressed = apply_plan(teacher, plan, DCGAN_INPUT, structure=structure)
    report = DeploymentReport()
    deployed = compressed.deployment_module(report=report)
    assert report.merged == ["net.3"]
    assert isinstance(deployed.net[3], nn.ConvTranspose2d)
    assert deployed.net[3].weight.shape == (192, 96, 4, 4)
    assert isinstance(deployed.net[6], nn.Sequential)  # rank 24 of 48: cheaper factorised
    assert _max_diff(deployed, compressed, DCGAN_INPUT) <= TOLERANCE


def test_scorer_times_the_deployment_module() -> None:
    class Candidate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
            self.deployed_calls = 0

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.net(z)

        def deployment_module(self) -> nn.Module:
            self.deployed_calls += 1
            return self.net

    protocol = ScoringProtocol(
        seeds=(0,),
        batch_size=4,
        kid_subsets=1,
        kid_subset_size=2,
        latency_runs=2,
        latency_warmup=0,
        latency_threads=1,
        latency_batch_size=2,
    )
    scorer = Scorer(protocol, {0: torch.randn(4, 4)}, None, None)
    candidate = Candidate()
    values, _ = scorer.cost(candidate)
    assert candidate.deployed_calls == 1
    assert values["params"] == 20.0  # counted on the candidate itself
