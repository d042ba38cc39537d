"""The joint search space: genes built from the teacher, YAML restrictions, decode/encode."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from gansearch.compress.apply import apply_plan
from gansearch.compress.importance import channel_importance, magnitude_masks
from gansearch.compress.plan import CompressionPlan, LayerPlan, validate
from gansearch.errors import ConfigError
from gansearch.spaces import (
    Choice,
    JointSpace,
    Mask,
    ParamsNotInSpaceError,
    PlanNotInSpaceError,
    SpaceConfig,
    parse_space_config,
    reference_params,
    reference_plans,
)
from gansearch.zoo.models import DCGANGenerator
from tests.toy_models import toy_generator

DCGAN_INPUT = torch.randn(2, 64, 1, 1, generator=torch.Generator().manual_seed(0))
TOY_INPUT = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))


def restricted(space: JointSpace, text: str) -> JointSpace:
    """``space``'s teacher under another YAML ``space:`` section (no re-tracing)."""
    config = parse_space_config(yaml.safe_load(text))
    return JointSpace(space.structure, config, space.channel_order)


@pytest.fixture(scope="module")
def dcgan() -> torch.nn.Module:
    torch.manual_seed(0)
    return DCGANGenerator().eval()


@pytest.fixture(scope="module")
def toy() -> torch.nn.Module:
    return toy_generator()


@pytest.fixture(scope="module")
def dcgan_space(dcgan: torch.nn.Module) -> JointSpace:
    return JointSpace.from_generator(dcgan, SpaceConfig(), DCGAN_INPUT)


@pytest.fixture(scope="module")
def toy_space(toy: torch.nn.Module) -> JointSpace:
    return JointSpace.from_generator(toy, SpaceConfig(), TOY_INPUT)


FULL_YAML = """
prune: {min_keep: 0.25, keep_ratios: [0.25, 0.5, 1.0]}
ofa: {widths: [0.25, 0.5, 1.0]}
bits: [1, ternary, 2, 4, 8, 16, 32]
codebook: [0, 4, 16]
lowrank: {ratios: [0, 0.25, 0.5, 1.0]}
activation_bits: [4, 8, 32]
norm_dtype: [float16, float32]
"""


@pytest.fixture(scope="module")
def full_toy_space(toy: torch.nn.Module) -> JointSpace:
    """Every family on, both prune and OFA (so with a `source` gene)."""
    return JointSpace.from_generator(toy, parse_space_config(yaml.safe_load(FULL_YAML)), TOY_INPUT)


# --------------------------------------------------------------------------- genes


def test_dcgan_genes_are_built_automatically(dcgan_space: JointSpace) -> None:
    genes = dcgan_space.genes
    masks = [g for g in genes.genes if isinstance(g, Mask)]
    assert [(g.name, g.length) for g in masks] == [
        ("mask:net.0", 192),
        ("mask:net.3", 96),
        ("mask:net.6", 48),
    ]
    assert [g.min_keep for g in masks] == [48, 24, 12]
    assert masks[2].keep_choices == (12, 18, 24, 30, 36, 48)
    for layer in ("net.0", "net.3", "net.6", "net.9"):  # every Conv/ConvT, the output too
        assert genes[f"bits:{layer}"].choices == (2, 3, 4, 6, 8, 16, 32)
        assert genes[f"codebook:{layer}"].choices == (0, 4, 16, 64)
    for layer in ("net.0", "net.3", "net.6"):
        assert genes[f"rank:{layer}"].choices == (0.0, 0.25, 0.5)
    # net.9 has one output channel: no rank of it can save parameters, so no gene.
    assert "rank:net.9" not in genes.names
    assert not any(name.endswith((".1", ".4", ".7")) for name in genes.names)  # BatchNorms
    assert "source" not in genes.names and not any(n.startswith("width:") for n in genes.names)
    # Single-valued families are fixed, not genes.
    assert dcgan_space.fixed["norm_dtype"] == "float32"
    assert dcgan_space.fixed["activation_bits:net.0"] == 32


def test_mask_order_is_the_magnitude_importance_order(
    dcgan: torch.nn.Module, dcgan_space: JointSpace
) -> None:
    importance = channel_importance(dcgan, dcgan_space.structure, DCGAN_INPUT)
    expected = magnitude_masks(dcgan_space.structure, importance, 0.5)
    for group, mask in expected.items():
        gene = dcgan_space.genes[f"mask:{group}"]
        assert gene.top(sum(mask)) == mask
        scores = importance[group][list(gene.order)]
        assert bool((scores[:-1] >= scores[1:]).all())


def test_toy_genes(toy_space: JointSpace) -> None:
    names = toy_space.genes.names
    groups = {g.name: g.num_channels for g in toy_space.structure.groups}
    assert groups == {"up": 12, "res.conv1": 12, "side": 6}
    for group, channels in groups.items():
        assert toy_space.genes[f"mask:{group}"].length == channels
    assert "mask:project" not in names  # excluded group (hard-coded view)
    layers = ("project", "up", "res.conv1", "res.conv2", "side", "out")
    for layer in layers:
        assert f"bits:{layer}" in names and f"codebook:{layer}" in names
    assert [n for n in names if n.startswith("rank:")] == [f"rank:{x}" for x in layers[:-1]]
    assert not any("norm" in n for n in names if n != "norm_dtype")


def test_full_space_has_source_width_and_activation_genes(full_toy_space: JointSpace) -> None:
    genes = full_toy_space.genes
    assert genes.names[0] == "source" and genes["source"].choices == ("mask", "ofa")
    assert genes["width:up"].choices == (3, 6, 12)
    assert genes["width:side"].choices == (2, 3, 6)  # round(0.25 * 6) = 2 (halves up)
    assert genes["bits:out"].choices == (1, "ternary", 2, 4, 8, 16, 32)
    assert genes["activation_bits:side"].choices == (4, 8, 32)
    assert genes["norm_dtype"].choices == ("float16", "float32")
    assert genes["rank:up"].choices == (0.0, 0.25, 0.5, 1.0)


# --------------------------------------------------------------------------- YAML config


def test_yaml_off_switches_families_off(toy_space: JointSpace) -> None:
    text = "prune: off\nbits: off\ncodebook: off\nlowrank: off\nactivation_bits: off\n"
    assert yaml.safe_load(text)["prune"] is False  # YAML reads `off` as False
    space = restricted(toy_space, text)
    assert space.genes.genes == ()  # nothing left to search
    plan = space.decode({})
    assert plan == CompressionPlan.identity(space.structure)


@pytest.mark.parametrize(
    ("text", "absent"),
    [
        ("prune: off", "mask:"),
        ("prune: null", "mask:"),
        ("lowrank: off", "rank:"),
        ("codebook: off", "codebook:"),
        ("codebook: [16, 64]", "bits:"),  # every layer codebook-encoded: bits never matter
        ("bits: [8]", "bits:"),  # a single value is fixed
    ],
)
def test_yaml_restrictions_remove_genes(toy_space: JointSpace, text: str, absent: str) -> None:
    space = restricted(toy_space, text)
    assert not any(name.startswith(absent) for name in space.genes.names)
    assert space.genes.names  # the other families remain


def test_yaml_on_means_defaults() -> None:
    config = parse_space_config(yaml.safe_load("ofa: on\nactivation_bits: on\nlowrank: yes"))
    assert config.ofa is not None and config.ofa.widths == (0.25, 0.5, 0.75, 1.0)
    assert config.activation_bits == (4, 8, 32)
    assert config.lowrank is not None and config.lowrank.ratios == (0.0, 0.25, 0.5)


def test_config_sorts_and_is_frozen() -> None:
    config = parse_space_config({"bits": [32, 8, "ternary", 1], "codebook": [64, 0]})
    assert config.bits == (1, "ternary", 8, 32)
    assert config.codebook == (0, 64)
    with pytest.raises(ValidationError):
        config.bits = (8,)  # type: ignore[misc]
    assert SpaceConfig.model_validate(json.loads(config.model_dump_json())) == config


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"prun": False}, "unknown key `space.prun`"),
        ({"prune": {"min_kep": 0.5}}, "unknown key `space.prune.min_kep`"),
        ({"prune": {"min_keep": 0}}, "`space.prune.min_keep`: must be a fraction in (0, 1]"),
        ({"prune": {"keep_ratios": [0.1, 1.0]}}, "keep_ratios [0.1] lie below min_keep"),
        ({"bits": [5.5]}, "`space.bits`: every entry must be 1 (binary)"),
        ({"bits": [8, 8]}, "`space.bits`: repeats a value"),
        ({"codebook": [1]}, "`space.codebook`: every entry must be 0 (no codebook)"),
        ({"lowrank": 3}, "`space.lowrank`: must be a mapping of options, `on` or `off`"),
        ({"lowrank": {"ratios": [1.5]}}, "`space.lowrank.ratios`: every rank ratio"),
        ({"ofa": {"widths": []}}, "`space.ofa.widths`: must list at least one value"),
        ({"activation_bits": [16]}, "`space.activation_bits`: every entry must be in 2..8"),
        ({"norm_dtype": ["bfloat16"]}, "`space.norm_dtype`: every entry must be one of"),
    ],
)
def test_config_errors_are_one_line_and_name_the_key(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space_config(data)
    message = str(info.value)
    assert fragment in message and "\n" not in message


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("space_name", ["dcgan_space", "toy_space", "full_toy_space"])
def test_decode_is_deterministic_valid_and_round_trips(
    request: pytest.FixtureRequest, space_name: str
) -> None:
    space: JointSpace = request.getfixturevalue(space_name)
    rng = np.random.default_rng(0)
    for _ in range(200):
        params = space.sample(rng)
        assert space.genes.contains(params)
        plan = space.decode(params)
        assert space.decode(dict(params)) == plan  # pure: equal params, equal plans
        validate(plan, space.structure)
        encoded = space.encode(plan)
        assert space.genes.contains(encoded)
        assert space.decode(encoded) == plan
        assert CompressionPlan.from_json(plan.to_json()) == plan


def test_decode_source_picks_masks_or_widths(full_toy_space: JointSpace) -> None:
    params = full_toy_space.sample(np.random.default_rng(1))
    as_masks = full_toy_space.decode({**params, "source": "mask"})
    as_widths = full_toy_space.decode({**params, "source": "ofa"})
    assert as_masks.widths is None and set(as_masks.masks) == {"up", "res.conv1", "side"}
    assert as_widths.masks == {} and as_widths.widths == {
        group: params[f"width:{group}"] for group in ("up", "res.conv1", "side")
    }


def test_rank_is_a_fraction_of_the_full_rank_after_pruning(toy_space: JointSpace) -> None:
    plan = CompressionPlan.identity(toy_space.structure)
    params = toy_space.encode(plan)
    keep3 = toy_space.genes["mask:res.conv1"].top(3)
    params.update({"mask:res.conv1": keep3, "rank:res.conv1": 0.5, "rank:up": 0.25})
    decoded = toy_space.decode(params)
    # res.conv1: 3 of 12 output channels kept -> full rank 3 -> round(1.5) = 2.
    assert decoded.layer("res.conv1").rank == 2
    assert decoded.layer("up").rank == 3  # 12 channels, 0.25 * 12
    # Rank ratio 1 never saves parameters, so it decodes to 0 (no factorisation).
    params["rank:up"] = params["rank:res.conv1"] = 0.0
    assert toy_space.decode(params).layer("up").rank == 0


def test_full_rank_ratio_maps_to_no_factorisation(full_toy_space: JointSpace) -> None:
    params = full_toy_space.encode(CompressionPlan.identity(full_toy_space.structure))
    params["rank:up"] = 1.0
    assert full_toy_space.decode(params).layer("up").rank == 0


def test_codebook_overrides_bits(toy_space: JointSpace) -> None:
    params = toy_space.encode(CompressionPlan.identity(toy_space.structure))
    params.update({"bits:side": 4, "codebook:side": 16})
    assert toy_space.decode(params).layer("side").weight == "codebook16"
    params["codebook:side"] = 0
    assert toy_space.decode(params).layer("side").weight == "int4"


def test_decode_rejects_params_outside_the_space(toy_space: JointSpace) -> None:
    params = toy_space.sample(np.random.default_rng(0))
    with pytest.raises(ParamsNotInSpaceError, match=r"miss \['bits:up'\]"):
        toy_space.decode({k: v for k, v in params.items() if k != "bits:up"})
    with pytest.raises(ParamsNotInSpaceError, match="unknown \\['typo'\\]"):
        toy_space.decode({**params, "typo": 1})
    with pytest.raises(ParamsNotInSpaceError, match="gene 'bits:up': value 5 is not in"):
        toy_space.decode({**params, "bits:up": 5})
    with pytest.raises(ParamsNotInSpaceError, match="gene 'mask:side'"):
        toy_space.decode({**params, "mask:side": (False,) * 6})


def test_decode_normalises_value_types(toy_space: JointSpace) -> None:
    """Values that storage round trips produce (floats, lists, numpy) decode the same."""
    params = toy_space.sample(np.random.default_rng(3))
    loose = {
        name: (list(np.array(value)) if isinstance(value, tuple) else value)
        for name, value in params.items()
    }
    loose["bits:up"] = np.int64(params["bits:up"])
    loose["codebook:up"] = 16.0
    params["codebook:up"] = 16
    assert toy_space.decode(loose) == toy_space.decode(params)
    assert toy_space.decode(loose).layer("up").weight == "codebook16"  # not "codebook16.0"


# --------------------------------------------------------------------------- encode


def test_identity_and_uniform_int8_round_trip(dcgan_space: JointSpace) -> None:
    identity = CompressionPlan.identity(dcgan_space.structure)
    assert dcgan_space.decode(dcgan_space.encode(identity)) == identity
    int8 = CompressionPlan(
        masks=identity.masks,
        layers={x.name: LayerPlan(weight="int8") for x in dcgan_space.structure.layers},
    )
    assert dcgan_space.decode(dcgan_space.encode(int8)) == int8
    # A plan leaving everything at its default encodes as its fully listed form.
    assert dcgan_space.decode(dcgan_space.encode(CompressionPlan())) == identity


def test_widths_plan_round_trips_in_an_ofa_space(full_toy_space: JointSpace) -> None:
    plan = CompressionPlan(widths={"up": 6, "res.conv1": 3, "side": 6})
    params = full_toy_space.encode(plan)
    assert params["source"] == "ofa"
    decoded = full_toy_space.decode(params)
    assert decoded.widths == plan.widths and decoded.masks == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weight": "int5"}, "layer 'up': weight 'int5' is not in this space; space.bits allows"),
        ({"weight": "codebook8"}, "layer 'up': weight 'codebook8' is not in this space"),
        ({"activation_bits": 8}, "layer 'up': activation_bits=8 is not in this space"),
        ({"rank": 5}, "layer 'up': rank 5 is not in this space; with the plan's pruning, "),
    ],
)
def test_encode_rejects_unrepresentable_layers(
    toy_space: JointSpace, change: dict, message: str
) -> None:
    identity = CompressionPlan.identity(toy_space.structure)
    layers = {**identity.layers, "up": LayerPlan(**{**LayerPlan().to_dict(), **change})}
    with pytest.raises(PlanNotInSpaceError) as info:
        toy_space.encode(CompressionPlan(masks=identity.masks, layers=layers))
    assert message in str(info.value)


def test_encode_rejects_unrepresentable_pruning(toy_space: JointSpace) -> None:
    mask = (True,) + (False,) * 11  # keeps 1 of 12, below min_keep = 3
    with pytest.raises(PlanNotInSpaceError, match="group 'up': the mask keeps 1 of 12"):
        toy_space.encode(CompressionPlan(masks={"up": mask}))
    with pytest.raises(PlanNotInSpaceError, match="space.ofa is off"):
        toy_space.encode(CompressionPlan(widths={"up": 6}))
    no_prune = restricted(toy_space, "prune: off")
    with pytest.raises(PlanNotInSpaceError, match="group 'up': .* space.prune is off"):
        no_prune.encode(CompressionPlan(masks={"up": (False,) + (True,) * 11}))
    no_codebook0 = restricted(toy_space, "codebook: [16]")
    with pytest.raises(PlanNotInSpaceError, match="needs codebook 0"):
        no_codebook0.encode(CompressionPlan())


def test_encode_rejects_plans_that_do_not_fit_the_structure(toy_space: JointSpace) -> None:
    from gansearch.compress.plan import InvalidPlanError

    with pytest.raises(InvalidPlanError, match="unknown group"):
        toy_space.encode(CompressionPlan(masks={"nope": (True,)}))


# --------------------------------------------------------------------------- references, JSON


def test_reference_plans(dcgan: torch.nn.Module, dcgan_space: JointSpace) -> None:
    plans = reference_plans(dcgan_space)
    assert set(plans) == {"teacher", "int8", "int4", "codebook16", "prune50"}
    assert plans["teacher"] == CompressionPlan.identity(dcgan_space.structure)
    importance = channel_importance(dcgan, dcgan_space.structure, DCGAN_INPUT)
    assert plans["prune50"].masks == magnitude_masks(dcgan_space.structure, importance, 0.5)
    params = reference_params(dcgan_space)
    assert set(params) == set(plans)  # the default space holds every reference
    for name, plan in plans.items():
        assert dcgan_space.decode(params[name]) == plan


def test_reference_params_skip_plans_outside_the_space(toy_space: JointSpace) -> None:
    space = restricted(toy_space, "bits: [8, 32]\ncodebook: off\nprune: off")
    assert set(reference_params(space)) == {"teacher", "int8"}


def test_space_json_round_trip(full_toy_space: JointSpace) -> None:
    text = full_toy_space.to_json()
    rebuilt = JointSpace.from_json(text)
    assert rebuilt == full_toy_space and rebuilt.genes == full_toy_space.genes
    params = full_toy_space.sample(np.random.default_rng(7))
    assert rebuilt.decode(params) == full_toy_space.decode(params)
    with pytest.raises(ValueError, match="version == 1"):
        JointSpace.from_json(json.dumps({**json.loads(text), "version": 99}))


def test_space_decoding_and_structure_import_no_torch() -> None:
    code = (
        "import sys, gansearch.spaces.joint, gansearch.compress.structure, "
        "gansearch.compress.recipes; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_genes_are_plain_choices_and_masks(full_toy_space: JointSpace) -> None:
    assert all(isinstance(g, Choice | Mask) for g in full_toy_space.genes.genes)


# --------------------------------------------------------------------------- end to end


def test_decoded_plans_apply_to_the_toy_generator(
    toy: torch.nn.Module, toy_space: JointSpace
) -> None:
    rng = np.random.default_rng(11)
    for _ in range(2):
        plan = toy_space.decode(toy_space.sample(rng))
        compressed = apply_plan(toy, plan, TOY_INPUT, structure=toy_space.structure)
        with torch.no_grad():
            output = compressed(TOY_INPUT)
        assert output.shape == (2, 1, 8, 8) and bool(torch.isfinite(output).all())


def test_space_config_validates_directly_as_a_nested_section() -> None:
    """How StudyConfig embeds it: `off` (False) works without parse_space_config too."""
    config = SpaceConfig.model_validate({"prune": False, "lowrank": None, "codebook": False})
    assert config.prune is None and config.lowrank is None and config.codebook is None
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        SpaceConfig.model_validate({"bitz": [8]})
