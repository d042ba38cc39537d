"""Tests of gansearch.compress: plans, structure, pruning, low-rank and apply_plan."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch_pruning as tp
from torch import nn

from gansearch.compress.apply import (
    CompressedGenerator,
    LowRankConfig,
    UnknownTransformError,
    apply_plan,
    apply_transform,
)
from gansearch.compress.encodings import decode_weight
from gansearch.compress.groups import describe
from gansearch.compress.importance import channel_importance, channel_order, magnitude_masks
from gansearch.compress.lowrank import LowRankError, factorize, full_rank
from gansearch.compress.plan import (
    CompressionPlan,
    InvalidPlanError,
    LayerPlan,
    PlanNotSupportedError,
    validate,
)
from gansearch.compress.prune import predicted_params, prune_channels
from gansearch.compress.serialize import encoded_state, encoding_manifest
from gansearch.compress.structure import (
    OUT,
    GeneratorStructure,
    GroupMember,
    importance_order,
    width_for,
)
from gansearch.errors import GansearchError
from gansearch.zoo.models import DCGANGenerator
from tests.toy_models import ToyGenerator, toy_generator

ENCODINGS = ("float16", "int8", "int4", "int2", "binary", "ternary", "codebook16")


pytestmark = pytest.mark.usefixtures("one_thread")


class ReshapeFriendlyToy(ToyGenerator):
    """ToyGenerator whose reshape infers the channel count, so its Linear can be pruned."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.project(z)).view(z.shape[0], -1, 4, 4)
        h = torch.relu(self.up_norm(self.up(h)))
        h = self.res(h)
        side = torch.relu(self.side_norm(self.side(h)))
        return torch.tanh(self.out(torch.cat([h, side], dim=1)))


def reshape_friendly_toy(seed: int = 0) -> ReshapeFriendlyToy:
    model = ReshapeFriendlyToy()
    model.load_state_dict(toy_generator(seed).state_dict())
    return model.eval()


@pytest.fixture(scope="module")
def toy() -> ToyGenerator:
    return toy_generator(0)


@pytest.fixture(scope="module")
def z() -> torch.Tensor:
    return torch.randn(2, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def structure(toy: ToyGenerator, z: torch.Tensor) -> GeneratorStructure:
    return describe(toy, z)


@pytest.fixture(scope="module")
def dcgan() -> DCGANGenerator:
    torch.manual_seed(0)
    model = DCGANGenerator(latent_dim=64, width=48)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def dcgan_z() -> torch.Tensor:
    return torch.randn(2, 64, 1, 1, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def dcgan_structure(dcgan: DCGANGenerator, dcgan_z: torch.Tensor) -> GeneratorStructure:
    return describe(dcgan, dcgan_z)


def random_masks(structure: GeneratorStructure, seed: int) -> dict[str, tuple[bool, ...]]:
    generator = torch.Generator().manual_seed(seed)
    masks = {}
    for group in structure.groups:
        mask = torch.rand(group.num_channels, generator=generator) < 0.6
        mask[torch.randint(group.num_channels, (1,), generator=generator)] = True
        masks[group.name] = tuple(bool(b) for b in mask)
    return masks


def random_plan(structure: GeneratorStructure, seed: int) -> CompressionPlan:
    """A valid plan using every transform, drawn with its own generator."""
    generator = torch.Generator().manual_seed(seed)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    masks = random_masks(structure, seed)
    kept = {name: sum(mask) for name, mask in masks.items()}
    layers = {}
    for layer in structure.layers:
        full = structure.full_rank_after_pruning(layer.name, kept)
        layers[layer.name] = LayerPlan(
            rank=pick([0, 1, max(1, full // 2), full]),
            weight=pick(("float32",) + ENCODINGS),
            activation_bits=pick([32, 8, 4, 2]),
        )
    return CompressionPlan(masks=masks, layers=layers, norm_dtype=pick(["float16", "float32"]))


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- structure


def test_toy_groups_cover_residual_concat_convtranspose_and_norms(structure):
    by_name = {g.name: g for g in structure.groups}
    assert list(by_name) == ["up", "res.conv1", "side"]
    members = {name: {(m.layer, m.dim) for m in g.members} for name, g in by_name.items()}
    # Residual add: ConvTranspose output, its BatchNorm, the block's last conv/norm and
    # every consumer of the sum (conv1, side branch, the concat slice of the output conv).
    assert members["up"] == {
        ("up", "out"),
        ("up_norm", "out"),
        ("res.conv1", "in"),
        ("res.conv2", "out"),
        ("res.norm2", "out"),
        ("side", "in"),
        ("out", "in"),
    }
    assert members["res.conv1"] == {("res.conv1", "out"), ("res.norm1", "out"), ("res.conv2", "in")}
    # Concatenation skip: the side branch occupies input channels 12..17 of the output conv.
    assert members["side"] == {("side", "out"), ("side_norm", "out"), ("out", "in")}
    assert GroupMember("out", "in", 1, 12) in by_name["side"].members
    assert [layer.name for layer in structure.layers] == [
        "project",
        "up",
        "res.conv1",
        "res.conv2",
        "side",
        "out",
    ]
    assert json.loads(GeneratorStructure.from_json(structure.to_json()).to_json()) == json.loads(
        structure.to_json()
    )
    assert GeneratorStructure.from_json(structure.to_json()) == structure


def test_output_layer_channels_are_never_in_a_group(structure, dcgan_structure):
    assert structure.output_layers == ("out",)
    assert dcgan_structure.output_layers == ("net.9",)
    for struct in (structure, dcgan_structure):
        for group in struct.groups:
            for member in group.members:
                assert not (member.layer in struct.output_layers and member.dim == OUT)


def test_output_layer_is_found_by_the_forward_not_by_name(z):
    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.z_last_in_name_order = nn.Conv2d(4, 3, 1)
            self.a_first = nn.Linear(8, 4 * 16)

        def forward(self, x):
            return self.z_last_in_name_order(self.a_first(x).view(x.shape[0], -1, 4, 4))

    struct = describe(Renamed(), z)
    assert struct.output_layers == ("z_last_in_name_order",)
    assert [g.name for g in struct.groups] == ["a_first"]


def test_linear_reshape_coupling_in_torch_pruning(toy, z):
    """Torch-Pruning maps channel c of the view (N, 12, 4, 4) to Linear outputs 16c..16c+15."""
    model = copy.deepcopy(toy)
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=z, forward_fn=lambda m, x: m(x), verbose=False
    )
    group = graph.get_pruning_group(model.up, tp.prune_conv_in_channels, idxs=[3])
    linear_idxs = [idxs for dep, idxs in group if dep.target.module is model.project]
    assert linear_idxs == [list(range(48, 64))]


def test_hard_coded_reshape_excludes_the_linear_group(structure):
    # ToyGenerator reshapes with view(n, self.width, 4, 4): the coupling is right, but the
    # Python code cannot follow a pruned width, so the group is excluded, with the reason.
    (excluded,) = structure.excluded_groups
    assert excluded.name == "project" and excluded.num_channels == 12
    assert excluded.reason.startswith(
        "the forward fails once this group is pruned at toy_models.py:"
    )
    assert "(`h = torch.relu(self.project(z)).view(z.shape[0], self.width, 4, 4)`)" in (
        excluded.reason
    )
    assert excluded.reason.endswith(
        "(RuntimeError: shape '[2, 12, 4, 4]' is invalid for input of size 352): a view/reshape "
        "in the forward code fixes the channel count; infer it instead (e.g. view(n, -1, h, w))"
    )
    assert all(g.name != "project" for g in structure.groups)


def test_linear_reshape_group_prunes_sixteen_outputs_per_channel(z):
    model = reshape_friendly_toy()
    struct = describe(model, z)
    group = struct.group("project")
    assert group.num_channels == 12
    assert GroupMember("project", "out", 16, 0) in group.members
    assert GroupMember("up", "in", 1, 0) in group.members
    mask = tuple(c not in (3, 7) for c in range(12))
    pruned = prune_channels(model, struct, {"project": mask}, z)
    assert pruned.project.out_features == 10 * 16
    assert pruned.up.in_channels == 10
    # Removing view-channel c equals zeroing Linear outputs 16c..16c+15 of the teacher.
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for c in (3, 7):
            zeroed.project.weight[16 * c : 16 * (c + 1)] = 0
            zeroed.project.bias[16 * c : 16 * (c + 1)] = 0
        torch.testing.assert_close(pruned(z), zeroed(z), rtol=0, atol=1e-6)


def test_dcgan_has_three_groups_and_a_half_width_plan_runs(dcgan, dcgan_z, dcgan_structure):
    groups = dcgan_structure.groups
    assert [(g.name, g.num_channels) for g in groups] == [
        ("net.0", 192),
        ("net.3", 96),
        ("net.6", 48),
    ]
    assert {(m.layer, m.dim) for m in groups[0].members} == {
        ("net.0", "out"),
        ("net.1", "out"),
        ("net.3", "in"),
    }
    assert dcgan_structure.excluded_groups == ()
    importance = channel_importance(dcgan, dcgan_structure, dcgan_z)
    masks = magnitude_masks(dcgan_structure, importance, 0.5)
    plan = CompressionPlan(masks=masks)
    compressed = apply_plan(dcgan, plan, dcgan_z, structure=dcgan_structure)
    assert compressed(dcgan_z).shape == (2, 1, 16, 16)
    net = compressed.module.net
    assert (net[0].out_channels, net[3].out_channels, net[6].out_channels) == (96, 48, 24)
    assert net[9].out_channels == 1
    assert compressed.param_count() == predicted_params(dcgan_structure, masks)


# --------------------------------------------------------------------------- pruning


def test_all_true_masks_reproduce_the_teacher_exactly(toy, z, structure):
    masks = {g.name: (True,) * g.num_channels for g in structure.groups}
    pruned = prune_channels(toy, structure, masks, z)
    assert torch.equal(pruned(z), toy(z))
    compressed = apply_plan(toy, CompressionPlan.identity(structure), z, structure=structure)
    assert torch.equal(compressed(z), toy(z))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruned_parameter_count_matches_the_prediction(toy, z, structure, seed):
    masks = random_masks(structure, seed)
    pruned = prune_channels(toy, structure, masks, z)
    assert sum(p.numel() for p in pruned.parameters()) == predicted_params(structure, masks)
    assert pruned(z).shape == toy(z).shape


def test_pruned_channels_are_really_removed_and_coupled_layers_agree(toy, z, structure):
    masks = {
        "up": tuple(c % 3 != 0 for c in range(12)),  # keep 8
        "res.conv1": tuple(c < 5 for c in range(12)),  # keep 5
        "side": (True, False, True, False, False, True),  # keep 3
    }
    before = state_copy(toy)
    pruned = prune_channels(toy, structure, masks, z)
    assert pruned.up.weight.shape == (12, 8, 4, 4)  # ConvTranspose: (in, out, kh, kw)
    assert pruned.up_norm.num_features == 8 and pruned.up_norm.running_mean.shape == (8,)
    assert pruned.res.conv1.weight.shape == (5, 8, 3, 3)
    assert pruned.res.norm1.weight.shape == (5,)
    assert pruned.res.conv2.weight.shape == (8, 5, 3, 3)
    assert pruned.res.norm2.weight.shape == (8,)
    assert pruned.side.weight.shape == (3, 8, 3, 3)
    assert pruned.side_norm.weight.shape == (3,)  # affine InstanceNorm
    assert pruned.out.weight.shape == (1, 8 + 3, 3, 3)  # concat of both branches
    assert pruned(z).shape == (2, 1, 8, 8)
    # The kept weights are the teacher's (channel selection, not re-initialisation).
    keep_up = [c for c in range(12) if masks["up"][c]]
    keep_side = [c for c in range(6) if masks["side"][c]]
    expected_out = toy.out.weight[:, keep_up + [12 + c for c in keep_side]]
    assert torch.equal(pruned.out.weight, expected_out)
    assert all(torch.equal(v, before[k]) for k, v in toy.state_dict().items())  # teacher intact


def test_channel_importance_is_the_l1_of_the_coupled_weights(dcgan, dcgan_z, dcgan_structure):
    importance = channel_importance(dcgan, dcgan_structure, dcgan_z)
    net = dcgan.net
    expected = (
        net[6].weight.abs().sum(dim=(0, 2, 3))  # ConvTranspose output channels are axis 1
        + net[7].weight.abs()
        + net[7].bias.abs()
        + net[9].weight.abs().sum(dim=(0, 2, 3))
    )
    torch.testing.assert_close(importance["net.6"], expected.detach())
    masks = magnitude_masks(dcgan_structure, importance, 0.25)
    kept = [c for c, keep in enumerate(masks["net.6"]) if keep]
    assert len(kept) == 12
    assert set(kept) == set(torch.argsort(expected, descending=True)[:12].tolist())


def test_channel_importance_is_the_hand_computed_l1_on_the_toy(z):
    """Every group of the toy: sum of |w| over exactly the slices pruning a channel removes.

    Covers a Linear reshaped to (N, 12, 4, 4) (16 outputs per channel), ConvTranspose2d
    (output channels on axis 1), a residual add, a concatenation slice and an affine
    InstanceNorm (which Torch-Pruning's GroupMagnitudeImportance alone would leave out).
    """
    model = reshape_friendly_toy(seed=3)
    struct = describe(model, z)
    w = {name: p.detach().abs() for name, p in model.named_parameters()}
    out_side = (1, 2, 3)  # Conv2d weight (out, in, kh, kw): sum all but the output axis
    in_side = (0, 2, 3)  # ... and all but the input axis (ConvTranspose2d: (in, out, kh, kw))
    expected = {
        "project": w["project.weight"].view(12, 16 * 8).sum(1)
        + w["project.bias"].view(12, 16).sum(1)
        + w["up.weight"].sum(out_side),  # ConvTranspose input channels are axis 0
        "up": w["up.weight"].sum(in_side)
        + w["up_norm.weight"]
        + w["up_norm.bias"]
        + w["res.conv1.weight"].sum(in_side)
        + w["res.conv2.weight"].sum(out_side)
        + w["res.norm2.weight"]
        + w["res.norm2.bias"]
        + w["side.weight"].sum(in_side)
        + w["out.weight"][:, :12].sum(in_side),
        "res.conv1": w["res.conv1.weight"].sum(out_side)
        + w["res.norm1.weight"]
        + w["res.norm1.bias"]
        + w["res.conv2.weight"].sum(in_side),
        "side": w["side.weight"].sum(out_side)
        + w["side.bias"]
        + w["side_norm.weight"]
        + w["side_norm.bias"]
        + w["out.weight"][:, 12:].sum(in_side),
    }
    importance = channel_importance(model, struct, z)
    assert sorted(importance) == sorted(expected)
    for name, scores in expected.items():
        torch.testing.assert_close(importance[name], scores)
    order = channel_order(model, struct, z)
    assert order == {name: importance_order(scores.tolist()) for name, scores in expected.items()}


def test_channel_order_of_the_digits_teacher_is_the_committed_supernet_order():
    """The committed digits supernet stores the importance order it was trained with."""
    from gansearch.checkpoints import load_weights
    from gansearch.zoo.weights_io import WEIGHTS_ROOT

    digits = WEIGHTS_ROOT / "digits"
    teacher = load_weights(DCGANGenerator(), digits / "generator.safetensors").eval()
    example = torch.zeros(2, 64, 1, 1)
    committed = json.loads((digits / "manifest.json").read_text())["digits-supernet"]
    order = channel_order(teacher, describe(teacher, example), example)
    assert order == {k: tuple(v) for k, v in committed["channel_order"].items()}


def test_width_rounds_halves_up_within_one_and_all_channels():
    assert [width_for(r, 12) for r in (0.25, 0.375, 0.5, 0.625, 1.0)] == [3, 5, 6, 8, 12]
    assert width_for(0.5, 5) == 3  # 2.5 rounds up, not to the even 2
    assert width_for(0.25, 6) == 2  # 1.5 rounds up
    assert width_for(0.01, 10) == 1  # never below one channel
    assert importance_order([1.0, 3.0, 3.0, 0.0, 2.0]) == (1, 2, 4, 0, 3)  # ties: lower first


# --------------------------------------------------------------------------- low-rank


@pytest.mark.parametrize(
    ("layer", "x"),
    [
        (nn.Linear(7, 5), (3, 7)),
        (nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2), (2, 3, 9, 9)),
        (nn.Conv2d(6, 4, 3, padding=1, padding_mode="reflect", bias=False), (2, 6, 5, 5)),
        (nn.ConvTranspose2d(5, 4, 4, stride=2, padding=1, output_padding=1), (2, 5, 4, 4)),
        (nn.ConvTranspose2d(64, 12, 4, 1, 0, bias=False), (2, 64, 1, 1)),
    ],
    ids=["linear", "conv-dilated", "conv-reflect", "convT-stride2", "convT-1to4"],
)
def test_svd_at_full_rank_reproduces_each_layer_type(layer, x):
    torch.manual_seed(0)
    inputs = torch.randn(x)
    full = full_rank(layer)
    factorized = factorize(layer, full)
    with torch.no_grad():
        torch.testing.assert_close(factorized(inputs), layer(inputs), rtol=0, atol=1e-5)
        errors = [(factorize(layer, r)(inputs) - layer(inputs)).norm() for r in (1, full)]
    assert errors[0] > errors[1]
    first, second = factorized
    assert first.bias is None and (second.bias is None) == (layer.bias is None)
    out_features = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    assert second.weight.shape[:2] == (out_features, full)


def test_low_rank_rejects_bad_ranks_and_grouped_convs():
    with pytest.raises(LowRankError, match="rank"):
        factorize(nn.Conv2d(4, 6, 3), 37)
    with pytest.raises(LowRankError, match="rank"):
        factorize(nn.Linear(4, 6), 0)
    with pytest.raises(LowRankError, match="groups"):
        factorize(nn.Conv2d(4, 4, 3, groups=2), 2)


def test_low_rank_keeps_the_layer_name_as_a_container(toy, z, structure):
    plan = CompressionPlan(layers={"up": LayerPlan(rank=5, weight="int4")})
    compressed = apply_plan(toy, plan, z, structure=structure)
    up = compressed.module.up
    assert isinstance(up, nn.Sequential)
    assert isinstance(up[0], nn.ConvTranspose2d) and isinstance(up[1], nn.Conv2d)
    assert up[0].weight.shape == (12, 5, 4, 4) and up[1].weight.shape == (12, 5, 1, 1)
    state = encoded_state(compressed)
    assert {"up.0.weight.codes", "up.1.weight.codes"} <= set(state)  # encoding on both factors
    manifest = encoding_manifest(compressed)
    assert manifest["factorized"]["up"] == {"rank": 5, "factors": ["up.0", "up.1"]}
    assert manifest["weights"]["up.0"]["channel_axis"] == 1  # ConvTranspose output axis
    assert compressed(z).shape == toy(z).shape


# --------------------------------------------------------------------------- plans


def test_plan_json_round_trip_is_exact(structure):
    plan = random_plan(structure, seed=3)
    plan = CompressionPlan(masks=plan.masks, layers=plan.layers, norm_dtype="float16")
    text = plan.to_json()
    again = CompressionPlan.from_json(text)
    assert again == plan
    assert again.to_json() == text
    assert json.loads(text)["version"] == 1
    widths = CompressionPlan(widths={"up": 4, "side": 6})
    assert CompressionPlan.from_json(widths.to_json()) == widths
    validate(widths, structure)


def test_identity_plan_lists_every_group_and_layer(structure):
    plan = CompressionPlan.identity(structure)
    validate(plan, structure)
    assert set(plan.masks) == {"up", "res.conv1", "side"}
    assert set(plan.layers) == {layer.name for layer in structure.layers}


@pytest.mark.parametrize(
    ("plan", "needles"),
    [
        (CompressionPlan(masks={"side": (False,) * 6}), ["side", "keeps 0"]),
        (CompressionPlan(masks={"side": (True,) * 5}), ["side", "5 entries", "6 channels"]),
        (CompressionPlan(masks={"nope": (True,)}), ["nope", "unknown group"]),
        (
            CompressionPlan(layers={"res.conv1": LayerPlan(rank=13)}),
            ["res.conv1", "rank 13", "full rank 12"],
        ),
        (CompressionPlan(layers={"res.conv1": LayerPlan(rank=-1)}), ["res.conv1", "rank"]),
        (CompressionPlan(layers={"side": LayerPlan(weight="int9")}), ["side", "int9"]),
        (CompressionPlan(layers={"side": LayerPlan(weight="codebook1")}), ["side", "codebook1"]),
        (CompressionPlan(layers={"side": LayerPlan(weight="int0")}), ["side", "int0"]),
        (CompressionPlan(layers={"side": LayerPlan(weight="fp8")}), ["side", "fp8"]),
        (CompressionPlan(layers={"out": LayerPlan(activation_bits=1)}), ["out", "activation_bits"]),
        (
            CompressionPlan(layers={"out": LayerPlan(activation_bits=16)}),
            ["out", "activation_bits"],
        ),
        (CompressionPlan(layers={"ghost": LayerPlan()}), ["ghost", "unknown layer"]),
        (CompressionPlan(norm_dtype="bfloat16"), ["norm_dtype", "bfloat16"]),
        (CompressionPlan(widths={"up": 13}), ["up", "width"]),
        (CompressionPlan(widths={"up": 0}), ["up", "width"]),
        (
            CompressionPlan(masks={"up": (True,) * 12}, widths={"up": 4}),
            ["masks must be empty", "widths"],
        ),
        (
            # Rank 6 fits the unpruned res.conv1 but not once its group keeps 4 channels.
            CompressionPlan(
                masks={"res.conv1": (True,) * 4 + (False,) * 8},
                layers={"res.conv1": LayerPlan(rank=6)},
            ),
            ["res.conv1", "rank 6", "full rank 4"],
        ),
    ],
    ids=[
        "zero-kept",
        "mask-length",
        "unknown-group",
        "rank-above-full",
        "negative-rank",
        "int9",
        "codebook1",
        "int0",
        "unknown-spec",
        "act-bits-1",
        "act-bits-16",
        "unknown-layer",
        "norm-dtype",
        "width-too-big",
        "width-zero",
        "masks-and-widths",
        "rank-after-pruning",
    ],
)
def test_invalid_plans_are_rejected_naming_layer_and_problem(structure, plan, needles):
    with pytest.raises(InvalidPlanError) as info:
        validate(plan, structure)
    assert isinstance(info.value, GansearchError)
    for needle in needles:
        assert needle in str(info.value)


def test_plan_json_rejects_unknown_keys_and_versions():
    with pytest.raises(InvalidPlanError, match="colour"):
        CompressionPlan.from_json('{"version": 1, "colour": "red"}')
    with pytest.raises(InvalidPlanError, match="version"):
        CompressionPlan.from_json('{"version": 2}')
    with pytest.raises(InvalidPlanError, match="bits"):
        CompressionPlan.from_json('{"version": 1, "layers": {"up": {"bits": 4}}}')


def test_widths_need_the_supernet(toy, z, structure):
    with pytest.raises(PlanNotSupportedError, match="supernet="):
        apply_plan(toy, CompressionPlan(widths={"up": 6}), z, structure=structure)


# --------------------------------------------------------------------------- apply


def test_unknown_transform_config_names_it_and_lists_known_ones(toy):
    class MysteryConfig:
        pass

    with pytest.raises(UnknownTransformError) as info:
        apply_transform(toy, MysteryConfig())
    message = str(info.value)
    assert "MysteryConfig" in message
    for known in ("PruneConfig", "LowRankConfig", "WeightEncodingConfig", "ActivationQuantConfig"):
        assert known in message


def test_low_rank_transform_alone(toy):
    model = apply_transform(copy.deepcopy(toy), LowRankConfig({"res.conv2": 12}))
    assert isinstance(model.res.conv2, nn.Sequential)


def _single_transform_plans(structure: GeneratorStructure) -> dict[str, CompressionPlan]:
    plans = {
        "prune": CompressionPlan(masks=random_masks(structure, 7)),
        "low-rank": CompressionPlan(
            layers={
                layer.name: LayerPlan(rank=max(1, layer.full_rank // 2))
                for layer in structure.layers
            }
        ),
        "activations": CompressionPlan(
            layers={layer.name: LayerPlan(activation_bits=4) for layer in structure.layers}
        ),
        "norm-float16": CompressionPlan(norm_dtype="float16"),
    }
    for spec in ENCODINGS:
        plans[spec] = CompressionPlan(
            layers={layer.name: LayerPlan(weight=spec) for layer in structure.layers}
        )
    return plans


@pytest.mark.parametrize("which", ["prune", "low-rank", "activations", "norm-float16", *ENCODINGS])
def test_each_transform_alone_keeps_the_output_shape(toy, z, structure, which):
    before = state_copy(toy)
    plan = _single_transform_plans(structure)[which]
    compressed = apply_plan(toy, plan, z, structure=structure)
    out = compressed(z)
    assert out.shape == toy(z).shape and torch.isfinite(out).all()
    assert all(torch.equal(v, before[k]) for k, v in toy.state_dict().items())  # teacher intact


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_composition_of_all_transforms(toy, z, structure, seed):
    plan = random_plan(structure, seed)
    validate(plan, structure)
    compressed = apply_plan(toy, plan, z, structure=structure, calibration_batches=[z, z * 2])
    assert isinstance(compressed, CompressedGenerator) and compressed.plan == plan
    out = compressed(z)
    assert out.shape == toy(z).shape and torch.isfinite(out).all()
    state = encoded_state(compressed)
    manifest = encoding_manifest(compressed)
    json.dumps(manifest)  # JSON-able
    assert manifest["stored_nbytes"] == compressed.stored_nbytes()
    # The stored payload decodes to the weights the simulated model runs with.
    for name, meta in manifest["weights"].items():
        payload = {
            k.split(".weight.")[1]: v for k, v in state.items() if k.startswith(f"{name}.weight.")
        }
        decoded = decode_weight(meta["spec"], tuple(meta["shape"]), meta["channel_axis"], payload)
        module = compressed.module.get_submodule(name)
        torch.testing.assert_close(decoded, module.weight.detach(), rtol=0, atol=1e-6)


def test_identity_plan_stores_four_bytes_per_parameter_and_statistic(toy, z, structure):
    compressed = apply_plan(toy, CompressionPlan.identity(structure), z, structure=structure)
    params = (
        (8 * 192 + 192)  # project: Linear(8, 12 * 4 * 4)
        + 12 * 12 * 16  # up: ConvTranspose2d(12, 12, 4), no bias
        + 2 * 3 * 12  # up_norm, res.norm1, res.norm2: BatchNorm2d(12) weight and bias
        + 2 * 12 * 12 * 9  # res.conv1, res.conv2: Conv2d(12, 12, 3), no bias
        + (12 * 6 * 9 + 6)  # side: Conv2d(12, 6, 3)
        + 2 * 6  # side_norm: affine InstanceNorm2d(6)
        + (18 * 9 + 1)  # out: Conv2d(18, 1, 3)
    )
    stats = 3 * 2 * 12  # running mean and var of the three BatchNorms
    assert params == 7525
    assert compressed.stored_nbytes() == 4 * (params + stats) == 30388
    assert not any(name.endswith("num_batches_tracked") for name in encoded_state(compressed))


def test_float16_norms_halve_norm_and_bias_bytes(toy, z, structure):
    full = apply_plan(toy, CompressionPlan(), z, structure=structure).stored_nbytes()
    half = apply_plan(toy, CompressionPlan(norm_dtype="float16"), z, structure=structure)
    norm_and_bias = sum(
        p.numel() for n, p in toy.named_parameters() if "norm" in n or n.endswith("bias")
    )
    norm_and_bias += 3 * 2 * 12
    assert full - half.stored_nbytes() == 2 * norm_and_bias


def test_int4_weights_take_about_an_eighth_of_float32(
    toy, z, structure, dcgan, dcgan_z, dcgan_structure
):
    def compress(model, struct, example, spec):
        layers = {layer.name: LayerPlan(weight=spec) for layer in struct.layers}
        return apply_plan(model, CompressionPlan(layers=layers), example, structure=struct)

    full = compress(dcgan, dcgan_structure, dcgan_z, "float32").stored_nbytes()
    int4 = compress(dcgan, dcgan_structure, dcgan_z, "int4").stored_nbytes()
    # The DCGAN's weights: 64*192*16 + 192*96*16 + 96*48*16 + 48*1*9 = 565,680 values in
    # 192 + 96 + 48 + 1 = 337 output channels. float32: 4 bytes a value. int4: half a byte
    # a value, plus a float16 scale and a float16 offset (4 bytes) per channel.
    float32_weights, int4_weights = 4 * 565_680, 565_680 // 2 + 4 * 337
    assert full - int4 == float32_weights - int4_weights == 1_978_532
    # On the toy, the packed codes are exactly half a byte per weight.
    toy_int4 = encoded_state(compress(toy, structure, z, "int4"))
    for layer in structure.layers:
        numel = 1
        for size in layer.weight_shape:
            numel *= size
        assert toy_int4[f"{layer.name}.weight.codes"].numel() == (numel + 1) // 2


def test_activation_ranges_add_two_float32_per_quantised_layer(toy, z, structure):
    base = apply_plan(toy, CompressionPlan(), z, structure=structure).stored_nbytes()
    plan = CompressionPlan(
        layers={"side": LayerPlan(activation_bits=4), "out": LayerPlan(activation_bits=8)}
    )
    compressed = apply_plan(toy, plan, z, structure=structure)
    assert compressed.stored_nbytes() == base + 2 * 2 * 4
    assert {"side.input_quant.lo", "side.input_quant.hi"} <= set(encoded_state(compressed))
    assert not torch.equal(compressed(z), toy(z))


def test_factorised_float32_layer_stores_both_thin_factors(toy, z, structure):
    base = apply_plan(toy, CompressionPlan(), z, structure=structure).stored_nbytes()
    compressed = apply_plan(
        toy, CompressionPlan(layers={"res.conv2": LayerPlan(rank=3)}), z, structure=structure
    )
    before, after = 12 * 12 * 9, 3 * (12 * 9 + 12)
    assert compressed.stored_nbytes() == base + 4 * (after - before)


def test_instance_norm_running_statistics_are_pruned_too():
    class TrackedInstanceNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.norm = nn.InstanceNorm2d(8, affine=True, track_running_stats=True)
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.head(torch.relu(self.norm(self.conv(x))))

    model = TrackedInstanceNorm().eval()
    with torch.no_grad():
        model.norm.running_mean.copy_(torch.arange(8.0))
    x = torch.randn(2, 3, 5, 5)
    struct = describe(model, x)
    mask = (True, False, True, True, False, True, True, True)
    pruned = prune_channels(model, struct, {"conv": mask}, x)
    assert pruned.norm.running_mean.tolist() == [0.0, 2.0, 3.0, 5.0, 6.0, 7.0]
    assert pruned.norm.running_var.shape == (6,)
    assert pruned(x).shape == (2, 2, 5, 5)


def test_plans_are_hashable_and_param_count_ignores_encoding_internals(toy, z, structure):
    plan = CompressionPlan(layers={"side": LayerPlan(weight="codebook4")})
    assert len({plan, CompressionPlan.from_json(plan.to_json())}) == 1
    compressed = apply_plan(toy, plan, z, structure=structure)
    assert compressed.param_count() == sum(p.numel() for p in toy.parameters())
