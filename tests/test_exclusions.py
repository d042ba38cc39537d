"""Which channel groups `describe` offers, and the exact reason for each one it excludes.

Generators are written the way users write them: a CycleGAN ResNet generator with
``ReLU(inplace=True)`` after InstanceNorm, an Upsample+Conv generator with grouped and
depthwise convolutions, and small models for each excluded pattern.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gansearch.compress.groups import describe
from gansearch.compress.importance import channel_importance, magnitude_masks
from gansearch.compress.masking import ChannelMasker
from gansearch.compress.prune import predicted_params, prune_channels
from gansearch.compress.structure import OUT, GeneratorStructure, GroupMember
from tests.toy_models import CycleResnetGenerator, GroupedUpsampleGenerator, seeded

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
LATENT = torch.randn(2, 16, generator=torch.Generator().manual_seed(4))

NORMS = {
    "reference": nn.InstanceNorm2d,
    "affine": functools.partial(nn.InstanceNorm2d, affine=True),
    "running_stats": functools.partial(nn.InstanceNorm2d, track_running_stats=True),
    "batchnorm": nn.BatchNorm2d,
}


def _half_masks(structure: GeneratorStructure) -> dict[str, tuple[bool, ...]]:
    return {g.name: tuple(i % 2 == 0 for i in range(g.num_channels)) for g in structure.groups}


def _assert_pruning_is_masking(
    model: nn.Module, structure: GeneratorStructure, masks: dict, example: torch.Tensor
) -> nn.Module:
    """Prune ``model``; the result must run, shrink as predicted and equal the masked model."""
    pruned = prune_channels(model, structure, masks, example).eval()
    with torch.no_grad():
        expected_shape = model(example).shape
        out = pruned(example)
        with ChannelMasker(model, structure) as masker:
            masker.set_masks(masks)
            masked = model(example)
    assert out.shape == expected_shape
    torch.testing.assert_close(out, masked, rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) == predicted_params(structure, masks)
    return pruned


# ----------------------------------------------------------------- in-place activations


@pytest.mark.parametrize("norm", sorted(NORMS))
def test_resnet_generator_keeps_every_group(norm: str) -> None:
    model = seeded(CycleResnetGenerator(norm_layer=NORMS[norm]))
    structure = describe(model, IMAGE)

    assert structure.excluded_groups == ()
    assert [g.name for g in structure.groups] == [
        "model.1",
        "model.4",
        "model.7",
        "model.10.conv_block.1",
        "model.11.conv_block.1",
        "model.12",
        "model.15",
    ]
    assert structure.output_layers == ("model.19",)
    # The norm after each conv (hidden from the trace by the in-place ReLU before) is in
    # the conv's group.
    by_name = {g.name: g for g in structure.groups}
    assert GroupMember("model.2", OUT) in by_name["model.1"].members
    assert GroupMember("model.10.conv_block.2", OUT) in by_name["model.10.conv_block.1"].members
    assert GroupMember("model.16", OUT) in by_name["model.15"].members

    pruned = _assert_pruning_is_masking(model, structure, _half_masks(structure), IMAGE)
    assert pruned.model[2].num_features == 2  # the norm shrank with its conv
    assert pruned.model[3].inplace  # the user's in-place activations are kept
    assert model.model[1].out_channels == 4  # the teacher is untouched


class FunctionalInplaceResnet(CycleResnetGenerator):
    """The same generator with its activations applied in place in a functional forward."""

    def __init__(self) -> None:
        super().__init__(norm_layer=functools.partial(nn.InstanceNorm2d, affine=True))
        for index, module in enumerate(self.model):
            if isinstance(module, nn.ReLU):
                self.model[index] = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.model:
            x = module(x)
            if isinstance(module, nn.InstanceNorm2d):
                x = F.relu(x, inplace=True)
        return x


def test_functional_inplace_activation_keeps_every_group() -> None:
    model = seeded(FunctionalInplaceResnet())
    structure = describe(model, IMAGE)
    assert structure.excluded_groups == ()
    assert len(structure.groups) == 7
    _assert_pruning_is_masking(model, structure, _half_masks(structure), IMAGE)


# ----------------------------------------------------------------- grouped convolutions


def test_grouped_convolutions_are_pruned_in_whole_groups() -> None:
    model = seeded(GroupedUpsampleGenerator())
    structure = describe(model, LATENT)

    assert structure.excluded_groups == ()
    by_name = {g.name: g for g in structure.groups}
    assert sorted(by_name) == ["grouped", "pointwise", "project", "up1.1"]
    # 16 channels feeding / leaving a groups=4 conv: 4 positions, each in all 4 blocks.
    assert by_name["up1.1"].num_channels == 4
    assert GroupMember("grouped", "in", 4, 0, 4) in by_name["up1.1"].members
    assert by_name["up1.1"].anchor.channels(1, 4) == [1, 5, 9, 13]
    assert by_name["grouped"].num_channels == 4
    assert GroupMember("depthwise", OUT, 4, 0, 4) in by_name["grouped"].members

    masks = {"up1.1": (True, False, True, True), "grouped": (False, True, True, False)}
    pruned = _assert_pruning_is_masking(model, structure, masks, LATENT)
    assert (pruned.grouped.in_channels, pruned.grouped.out_channels) == (12, 8)
    assert pruned.grouped.groups == 4  # every conv group lost the same channels
    assert pruned.depthwise.groups == pruned.depthwise.out_channels == 8

    importance = channel_importance(model, structure, LATENT)
    assert importance["grouped"].shape == (4,)
    kept = magnitude_masks(structure, importance, 0.5)
    _assert_pruning_is_masking(model, structure, kept, LATENT)


class ConcatIntoGroupedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, 1, 1)
        self.b = nn.Conv2d(3, 8, 3, 1, 1)
        self.grouped = nn.Conv2d(16, 8, 3, 1, 1, groups=2)
        self.out = nn.Conv2d(8, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.grouped(torch.relu(torch.cat([self.a(x), self.b(x)], dim=1)))
        return self.out(torch.relu(h))


class ChannelMultiplierConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, 8, 3, 1, 1)
        self.expand = nn.Conv2d(8, 16, 3, 1, 1, groups=8)  # two filters per input channel
        self.out = nn.Conv2d(16, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.expand(torch.relu(self.inp(x)))))


# ----------------------------------------------------------------- excluded patterns


class FixedViewGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.width = 8
        self.project = nn.Linear(16, 8 * 4 * 4)
        self.out = nn.Conv2d(8, 3, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], self.width, 4, 4)
        return self.out(torch.relu(h))


class FixedSplit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, 16, 3, 1, 1)
        self.out = nn.Conv2d(8, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, _spare = torch.split(self.inp(x), [8, 8], dim=1)
        return self.out(torch.relu(features))


class FixedBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, 16, 3, 1, 1)
        self.out = nn.Conv2d(16, 3, 3, 1, 1)
        self.register_buffer("shift", torch.linspace(-1, 1, 16).view(1, 16, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.inp(x) + self.shift))


class FixedConstant(FixedBuffer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.inp(x) + torch.ones(1, 16, 1, 1)))


class DepthwiseOutput(nn.Module):
    """``to_rgb`` is coupled to the depthwise output layer's image channels."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, 8, 3, 1, 1)
        self.to_rgb = nn.Conv2d(8, 3, 1)
        self.smooth = nn.Conv2d(3, 3, 3, 1, 1, groups=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.smooth(self.to_rgb(torch.relu(self.inp(x)))))


class GroupNormGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, 8, 3, 1, 1)
        self.norm = nn.GroupNorm(2, 8)
        self.out = nn.Conv2d(8, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.inp(x))))


class LooseParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, 8, 3, 1, 1)
        self.gain = nn.Parameter(torch.ones(1, 8, 1, 1))
        self.out = nn.Conv2d(8, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.inp(x) * self.gain))


FAILS = "the forward fails once this group is pruned at test_exclusions.py:"
FIXED_VIEW = (
    ": a view/reshape in the forward code fixes the channel count; infer it instead "
    "(e.g. view(n, -1, h, w))"
)
FIXED_TENSOR = (
    ": the forward code combines the group's channels with a tensor whose channel count is "
    "fixed (a buffer, or a constant made in forward), which the dependency trace cannot "
    "couple to the group"
)

EXCLUDED = [
    pytest.param(
        FixedViewGenerator,
        LATENT,
        "project",
        8,
        (
            FAILS,
            "(`h = self.project(z).view(z.shape[0], self.width, 4, 4)`) "
            "(RuntimeError: shape '[2, 8, 4, 4]' is invalid for input of size 224)" + FIXED_VIEW,
        ),
        id="fixed-view",
    ),
    pytest.param(
        FixedSplit,
        IMAGE,
        "inp",
        8,
        (FAILS, "(`features, _spare = torch.split(self.inp(x), [8, 8], dim=1)`) "),
        id="fixed-split",
    ),
    pytest.param(
        FixedBuffer,
        IMAGE,
        "inp",
        16,
        (FAILS, "(`return self.out(torch.relu(self.inp(x) + self.shift))`) (RuntimeError: "),
        id="buffer",
    ),
    pytest.param(
        FixedConstant,
        IMAGE,
        "inp",
        16,
        (FAILS, "(`return self.out(torch.relu(self.inp(x) + torch.ones(1, 16, 1, 1)))`) "),
        id="constant",
    ),
    pytest.param(
        ConcatIntoGroupedConv,
        IMAGE,
        "a",
        8,
        (
            "grouped convolution 'grouped' (groups=2) takes only part of its input channels "
            "from this group, so its convolution groups cannot lose the same channels",
        ),
        id="grouped-conv-concat",
    ),
    pytest.param(
        ChannelMultiplierConv,
        IMAGE,
        "inp",
        8,
        ("its grouped convolutions keep a multiple of 8 of its 8 channels, so it cannot lose any",),
        id="grouped-conv-one-channel-per-group",
    ),
    pytest.param(
        DepthwiseOutput,
        IMAGE,
        "to_rgb",
        3,
        (
            "its channels are coupled to the output channels of output layer(s) 'smooth', "
            "which are never pruned",
        ),
        id="output-layer",
    ),
    pytest.param(
        GroupNormGenerator,
        IMAGE,
        "inp",
        8,
        ("members of unsupported type: 'norm' (GroupNorm)",),
        id="group-norm",
    ),
    pytest.param(
        LooseParameter,
        IMAGE,
        "inp",
        8,
        ("the group prunes parameters outside Conv/Linear/norm modules",),
        id="loose-parameter",
    ),
]


@pytest.mark.parametrize(("model_class", "example", "name", "channels", "reason"), EXCLUDED)
def test_exclusion_reason(
    model_class: type[nn.Module],
    example: torch.Tensor,
    name: str,
    channels: int,
    reason: tuple[str, ...],
) -> None:
    structure = describe(seeded(model_class()), example)
    excluded = {g.name: g for g in structure.excluded_groups}
    assert name in excluded, structure.excluded_groups
    assert excluded[name].num_channels == channels
    text = excluded[name].reason
    assert "probably" not in text
    if len(reason) == 1:
        assert text == reason[0]
    else:
        assert text.startswith(reason[0])
        assert reason[1] in text


@pytest.mark.parametrize(
    ("model_class", "cause"),
    [
        (FixedSplit, ": a split in the forward code uses fixed sizes"),
        (FixedBuffer, FIXED_TENSOR),
        (FixedConstant, FIXED_TENSOR),
    ],
)
def test_failure_causes(model_class: type[nn.Module], cause: str) -> None:
    structure = describe(seeded(model_class()), IMAGE)
    (excluded,) = structure.excluded_groups
    assert excluded.reason.endswith(cause)
