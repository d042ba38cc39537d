"""Once-for-all supernet (gansearch.compress.supernet) on the toy generator.

The toy generator has a residual block, a concatenation skip and an InstanceNorm, so the
masked-vs-extracted invariant is checked on the coupled cases of structural pruning.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from gansearch.compress import describe, magnitude_masks, prune_channels
from gansearch.compress.batchnorm import recalibrate_batchnorm
from gansearch.compress.importance import channel_importance, channel_order
from gansearch.compress.recipes import SupernetRecipe
from gansearch.compress.structure import width_for
from gansearch.compress.supernet import (
    Supernet,
    SupernetError,
    WidthSampler,
    extract,
    load_supernet,
    masked,
    save_supernet,
)
from gansearch.compress.supernet_train import train_supernet
from gansearch.config import SupernetConfig
from gansearch.errors import CheckpointError
from gansearch.inputs import LatentSource
from tests.toy_models import toy_generator

LATENT_SHAPE = (8,)
RATIOS = (0.25, 0.5, 0.75, 1.0)
EXAMPLE = torch.zeros(2, *LATENT_SHAPE)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    return toy_generator(0)


@pytest.fixture(scope="module")
def structure(teacher: nn.Module):
    return describe(teacher, torch.zeros(2, *LATENT_SHAPE))


def _config(steps: int, seed: int = 0) -> SupernetRecipe:
    return SupernetRecipe(steps=steps, ratios=RATIOS, lr=3e-3, batch_size=16, seed=seed)


@pytest.fixture(scope="module")
def trained(teacher: nn.Module, structure) -> Supernet:
    return train_supernet(
        teacher, None, None, structure, _config(8), inputs=LatentSource(LATENT_SHAPE)
    )


def _latents(n: int = 32, seed: int = 99) -> torch.Tensor:
    return torch.randn((n, *LATENT_SHAPE), generator=torch.Generator().manual_seed(seed))


def _teacher_l1(model: nn.Module, teacher: nn.Module) -> float:
    z = _latents(256, seed=5)
    with torch.no_grad():
        return (model.eval()(z) - teacher.eval()(z)).abs().mean().item()


def test_sandwich_has_largest_smallest_and_random_widths(trained: Supernet) -> None:
    sampler = WidthSampler(trained, seed=0)
    allowed = {
        g.name: {width_for(r, g.num_channels) for r in RATIOS} for g in trained.structure.groups
    }
    seen: dict[str, set[int]] = {name: set() for name in allowed}
    for _ in range(20):
        largest, smallest, random = sampler.sandwich()
        assert largest == {g.name: g.num_channels for g in trained.structure.groups}
        assert smallest == {"up": 3, "res.conv1": 3, "side": 2}
        for name, width in random.items():
            assert width in allowed[name]
            seen[name].add(width)
    assert all(len(widths) > 1 for widths in seen.values())  # really random


def test_sampler_is_deterministic_per_seed(trained: Supernet) -> None:
    def draws(seed: int) -> list[dict[str, int]]:
        sampler = WidthSampler(trained, seed)
        return [sampler.random() for _ in range(10)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_masked_supernet_equals_extracted_sub_generator(trained: Supernet, seed: int) -> None:
    widths = WidthSampler(trained, seed).random() if seed else trained.smallest()
    z = _latents()
    trained.model.eval()
    with torch.no_grad(), masked(trained, widths) as model:
        expected = model(z)
    with torch.no_grad():
        actual = extract(trained, widths, calibration_batches=0)(z)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    with torch.no_grad():
        full = trained.model(z)  # hooks are gone after the block
    assert widths == trained.largest() or not torch.allclose(full, expected, atol=1e-3)


def test_equality_holds_after_bn_recalibration_too(trained: Supernet) -> None:
    widths = trained.smallest()
    batches = [_latents(16, seed=s) for s in range(3)]
    copy_of = Supernet(
        copy.deepcopy(trained.model),
        trained.structure,
        trained.order,
        trained.ratios,
        trained.inputs,
    )
    with masked(copy_of, widths) as model:
        recalibrate_batchnorm(model, batches)
        with torch.no_grad():
            expected = model(_latents())
    sub = extract(trained, widths, calibration_batches=0)
    recalibrate_batchnorm(sub, batches)
    with torch.no_grad():
        torch.testing.assert_close(sub(_latents()), expected, atol=1e-5, rtol=0)


def test_extracted_widths_have_the_expected_channel_counts(trained: Supernet) -> None:
    sub = extract(trained, trained.widths(0.5), calibration_batches=2, batch_size=8)
    assert sub.up.out_channels == sub.up_norm.num_features == 6
    assert sub.res.conv1.out_channels == sub.res.conv2.in_channels == 6
    assert sub.res.conv2.out_channels == 6 and sub.side.in_channels == 6
    assert sub.side.out_channels == sub.side_norm.num_features == 3
    assert sub.out.in_channels == 6 + 3 and sub.out.out_channels == 1
    assert not sub.training
    assert sub(_latents(4)).shape == (4, 1, 8, 8)


def test_widths_keep_the_most_important_channels_first(teacher: nn.Module, structure) -> None:
    """Untrained, a sub-generator is exactly the magnitude-pruned teacher."""
    supernet = Supernet(
        copy.deepcopy(teacher),
        structure,
        channel_order(teacher, structure, EXAMPLE),
        RATIOS,
        LatentSource(LATENT_SHAPE),
    )
    masks = magnitude_masks(structure, channel_importance(teacher, structure, EXAMPLE), 0.5)
    assert supernet.keep_masks(supernet.widths(0.5)) == masks
    pruned = prune_channels(teacher, structure, masks, torch.zeros(2, 8)).eval()
    sub = extract(supernet, supernet.widths(0.5), calibration_batches=0)
    with torch.no_grad():
        torch.testing.assert_close(sub(_latents()), pruned(_latents()), atol=1e-6, rtol=0)


def test_training_is_deterministic_and_leaves_the_teacher_alone(
    teacher: nn.Module, structure
) -> None:
    state = copy.deepcopy(teacher.state_dict())
    first = train_supernet(
        teacher, None, None, structure, _config(3), inputs=LatentSource(LATENT_SHAPE)
    )
    second = train_supernet(
        teacher, None, None, structure, _config(3), inputs=LatentSource(LATENT_SHAPE)
    )
    other = train_supernet(
        teacher, None, None, structure, _config(3, seed=1), inputs=LatentSource((8,))
    )
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    assert any(
        not torch.equal(t, other.model.state_dict()[n]) for n, t in first.model.state_dict().items()
    )
    assert not teacher.training
    for name, tensor in teacher.state_dict().items():
        assert torch.equal(tensor, state[name]), name


@pytest.mark.slow
def test_training_improves_the_smallest_sub_generator(teacher: nn.Module, structure) -> None:
    untrained = Supernet(
        copy.deepcopy(teacher),
        structure,
        channel_order(teacher, structure, EXAMPLE),
        RATIOS,
        LatentSource(LATENT_SHAPE),
    )
    before = _teacher_l1(extract(untrained, untrained.smallest(), batch_size=32), teacher)
    supernet = train_supernet(
        teacher, None, None, structure, _config(40), inputs=LatentSource(LATENT_SHAPE)
    )
    after = _teacher_l1(extract(supernet, supernet.smallest(), batch_size=32), teacher)
    assert after < 0.8 * before
    largest = _teacher_l1(extract(supernet, supernet.largest(), batch_size=32), teacher)
    assert largest < before  # the full width stays close to the teacher


def test_masking_that_is_not_pruning_is_refused() -> None:
    """Sigmoid(0) = 0.5: a zeroed channel still feeds the next layer."""
    model = nn.Sequential(
        nn.ConvTranspose2d(4, 8, 4, 1, 0),
        nn.BatchNorm2d(8),
        nn.Sigmoid(),
        nn.Conv2d(8, 1, 3, 1, 1),
        nn.Tanh(),
    ).eval()
    structure = describe(model, torch.zeros(2, 4, 1, 1))
    with pytest.raises(SupernetError, match=r"not equivalent to pruning"):
        train_supernet(model, None, None, structure, _config(1), inputs=LatentSource((4, 1, 1)))


def test_save_and_load_round_trip(trained: Supernet, teacher: nn.Module, structure, tmp_path):
    config = _config(8)
    path = save_supernet(
        trained, tmp_path, entry="toy-supernet", command="gansearch supernet train x", config=config
    )
    assert path.suffix == ".safetensors"
    record = json.loads((tmp_path / "manifest.json").read_text())["toy-supernet"]
    assert record["command"] == "gansearch supernet train x" and record["seed"] == 0
    assert record["channel_order"] == {k: list(v) for k, v in trained.order.items()}
    # The recipe is recorded exactly as the study's validated `supernet:` section.
    section = SupernetConfig(steps=8, ratios=RATIOS, lr=3e-3, batch_size=16, seed=0)
    assert section.recipe() == config
    assert record["recipe"] == section.model_dump(mode="json")
    loaded = load_supernet(
        teacher, structure, tmp_path, entry="toy-supernet", inputs=LatentSource(LATENT_SHAPE)
    )
    assert loaded.order == trained.order and loaded.ratios == RATIOS
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name

    with pytest.raises(CheckpointError, match=r"no `other` entry"):
        load_supernet(teacher, structure, tmp_path, entry="other", inputs=trained.inputs)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["toy-supernet"]["channel_order"]["side"] = [0, 0, 1, 2, 3, 4]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"no valid channel order for group 'side'"):
        load_supernet(teacher, structure, tmp_path, entry="toy-supernet", inputs=trained.inputs)


def toy_images() -> torch.Tensor:
    """Data factory of the CLI test below (real images in the toy generator's range)."""
    return torch.tanh(torch.randn((64, 1, 8, 8), generator=torch.Generator().manual_seed(0)))


def test_cli_reports_a_diverging_run_as_one_line(tmp_path, capsys) -> None:
    import typer

    from gansearch.cli.supernet import supernet_train

    study = tmp_path / "study.yaml"
    study.write_text(
        "name: diverge\n"
        "model:\n"
        "  generator: tests.toy_models:toy_generator\n"
        "  data: tests.test_supernet:toy_images\n"
        "  latent_shape: [8]\n"
        "objectives: [stored_bytes]\n"
        "supernet: {steps: 5, lr: 1.0e+30, batch_size: 8, ratios: [0.5, 1.0]}\n"
    )
    with pytest.raises(typer.Exit) as caught:
        supernet_train(study, steps=None, out=tmp_path / "out")
    assert caught.value.exit_code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("gansearch: error:")]
    assert len(lines) == 1 and "distillation diverged at step" in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "supernet.safetensors").exists()


def test_apply_plan_takes_widths_from_the_supernet(
    teacher: nn.Module, structure, trained: Supernet
) -> None:
    from gansearch.compress.apply import apply_plan
    from gansearch.compress.plan import CompressionPlan

    widths = trained.smallest()
    z = _latents()
    compressed = apply_plan(
        teacher, CompressionPlan(widths=widths), z[:2], structure=structure, supernet=trained
    )
    assert compressed.plan.widths is None  # resolved into masks over the supernet's order
    assert compressed.plan.masks == trained.keep_masks(widths)
    with torch.no_grad():
        expected = extract(trained, widths, calibration_batches=0)(z)
        torch.testing.assert_close(compressed(z), expected, atol=1e-5, rtol=0)


def test_fake_quantize_is_on_a_grid_and_straight_through() -> None:
    from gansearch.compress.supernet_train import fake_quantize

    weight = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(0))
    weight.requires_grad_(True)
    quantized = fake_quantize(weight, 3, 0)
    for row in quantized.detach().reshape(6, -1):
        assert len(torch.unique(row)) <= 2**3  # one 3-bit grid per output channel
    assert (quantized - weight).abs().max() > 0
    quantized.sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))  # straight-through


def test_quantisation_aware_grid_is_the_extracted_sub_generators_grid(
    trained: Supernet, structure
) -> None:
    """While training, a layer's grid is fit on the input channels the sub-generator
    keeps, so it is the grid its extracted (physically pruned) weight gets."""
    from gansearch.compress.fakequant import default_channel_axis
    from gansearch.compress.supernet_train import fake_quantize, kept_inputs

    widths = trained.smallest()
    masks = trained.keep_masks(widths)
    extracted = extract(trained, widths, calibration_batches=0)
    kept = kept_inputs(structure, masks)
    assert kept  # the toy prunes some layer's inputs
    for name, index in kept.items():
        module = trained.model.get_submodule(name)
        axis = default_channel_axis(module)
        in_axis = 0 if axis == 1 else 1
        full = fake_quantize(module.weight.detach(), 3, axis, (in_axis, index))
        full = full.index_select(in_axis, index)
        out_rows = [
            torch.tensor([i for i, on in enumerate(masks[g.name]) if on])
            for g in structure.groups
            if any(m.layer == name and m.dim == "out" for m in g.members)
        ]
        if out_rows:
            full = full.index_select(axis, out_rows[0])
        small = fake_quantize(extracted.get_submodule(name).weight.detach(), 3, axis)
        torch.testing.assert_close(full, small, atol=1e-6, rtol=0)


def test_quantisation_aware_training_is_deterministic_and_recorded(
    teacher: nn.Module, structure
) -> None:
    import dataclasses

    inputs = LatentSource(LATENT_SHAPE)
    recipe = dataclasses.replace(_config(6), bits=(3, 4, 32))
    first = train_supernet(teacher, None, None, structure, recipe, inputs=inputs)
    second = train_supernet(teacher, None, None, structure, recipe, inputs=inputs)
    floats = train_supernet(teacher, None, None, structure, _config(6), inputs=inputs)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    assert any(
        not torch.equal(tensor, floats.model.state_dict()[name])
        for name, tensor in first.model.state_dict().items()
    )  # the fake-quantised sandwich members trained the shared weights differently
    assert recipe.to_dict()["bits"] == [3, 4, 32]
