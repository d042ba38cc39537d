"""The photographs benchmark's data, networks and committed teacher (gansearch.zoo.photos,
gansearch.zoo.resnet, gansearch.zoo.train_photos)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gansearch.checkpoints import load_weights, sha256_file
from gansearch.compress.distill_loss import discriminator_features
from gansearch.errors import GansearchError
from gansearch.evaluators.macs import count_macs
from gansearch.zoo.photos import (
    NOISE_SIGMA,
    TEST_IMAGES,
    TRAIN_IMAGES,
    TRAIN_PATCHES,
    bicubic_baseline,
    bicubic_upsample,
    load_photos_split,
    paired_scores,
)
from gansearch.zoo.resnet import NLayerDiscriminator, ResnetBlock, ResnetGenerator
from gansearch.zoo.train_photos import SRRecipe, _dihedral, evaluate_sr
from gansearch.zoo.weights_io import WEIGHTS_ROOT, read_manifest

PHOTOS = WEIGHTS_ROOT / "photos"


def _keys(sources: tuple[tuple[str, str], ...]) -> set[str]:
    return {f"{package}/{name}" for package, name in sources}


def test_splits_hold_out_whole_images() -> None:
    train, test = load_photos_split("train"), load_photos_split("test")
    assert not _keys(TRAIN_IMAGES) & _keys(TEST_IMAGES)
    assert set(train.names) <= _keys(TRAIN_IMAGES) and set(test.names) == _keys(TEST_IMAGES)
    assert not set(train.names) & set(test.names)
    everything = load_photos_split("all")
    assert len(everything) == len(train) + len(test)
    assert everything.names == train.names + test.names
    assert torch.equal(everything.targets[len(train) :], test.targets)


@pytest.mark.parametrize("split", ["train", "test"])
def test_patches_are_paired_x4_downscales_in_range(split: str) -> None:
    data = load_photos_split(split)
    n = len(data)
    assert n == TRAIN_PATCHES if split == "train" else 0 < n <= 512
    assert data.inputs.shape == data.targets.shape == (n, 3, 64, 64)
    assert data.lr.shape == (n, 3, 16, 16) and len(data.names) == n
    for images in (data.inputs, data.targets, data.lr):
        assert images.dtype == torch.float32
        assert images.min() >= -1.0 and images.max() <= 1.0
    noise = data.lr - F.avg_pool2d(data.targets, 4)  # area downscale + Gaussian noise
    assert abs(float(noise.std()) - NOISE_SIGMA) < 0.02 and abs(float(noise.mean())) < 0.01
    assert torch.allclose(data.inputs, bicubic_upsample(data.lr), atol=1e-6)
    assert data.targets.std() > 0.1  # real photographs, not blank crops


def test_train_patches_are_deterministic() -> None:
    first = load_photos_split("train")
    load_photos_split.cache_clear()
    second = load_photos_split("train")
    assert first is not second
    assert torch.equal(first.targets, second.targets) and first.names == second.names


def test_unknown_split_is_a_user_error() -> None:
    with pytest.raises(GansearchError, match="unknown photos split 'valid'"):
        load_photos_split("valid")  # type: ignore[arg-type]


def test_bicubic_known_answers() -> None:
    constant = torch.full((2, 3, 16, 16), 0.25)
    up = bicubic_upsample(constant)
    assert up.shape == (2, 3, 64, 64)
    score = paired_scores(up, torch.full((2, 3, 64, 64), 0.25))
    assert score.psnr >= 100.0  # the ceiling of gansearch.evaluators.fidelity.psnr
    assert score.ssim == pytest.approx(1.0, abs=1e-9)
    test = load_photos_split("test")
    baseline = bicubic_baseline("test")
    mse = float((test.inputs.double() - test.targets.double()).square().mean())
    assert baseline.psnr == pytest.approx(10 * math.log10(4.0 / mse), rel=1e-9)
    assert 0.0 < baseline.ssim < 1.0


def test_generator_keeps_the_reference_pattern() -> None:
    model = ResnetGenerator()
    layers = list(model.model)
    assert isinstance(layers[0], nn.ReflectionPad2d) and isinstance(layers[-1], nn.Tanh)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules()) == 2
    assert sum(isinstance(m, ResnetBlock) for m in model.modules()) == 6
    for block in [
        model.model,
        *(b.conv_block for b in model.modules() if isinstance(b, ResnetBlock)),
    ]:
        children = list(block)
        for norm, after in zip(children, children[1:], strict=False):
            if isinstance(norm, nn.InstanceNorm2d):
                assert not norm.affine and not norm.track_running_stats
                assert isinstance(after, nn.ReLU) and after.inplace
    pads = [m for m in model.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert len(pads) == 2 + 2 * 6
    stride_one = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == (1, 1)]
    assert stride_one and all(m.padding == (0, 0) for m in stride_one)  # padded by reflection


def test_generator_size_and_residual() -> None:
    recipe = SRRecipe()
    model = ResnetGenerator(ngf=recipe.ngf, n_blocks=recipe.n_blocks).eval()
    macs = count_macs(model, torch.zeros(1, 3, 64, 64))
    assert 0.3e9 <= macs <= 3e9
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.4 - 0.2
    with torch.no_grad():
        out = model(x)
        # x -> a x + c equivariance of the contrast-scaled residual (no clamping here).
        shifted = model(0.5 * x + 0.1)
        nn.init.zeros_(model.model[-2].weight)
        nn.init.zeros_(model.model[-2].bias)
        identity = model(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert torch.allclose(shifted, 0.5 * out + 0.1, atol=1e-4)
    assert torch.equal(identity, x)


def test_discriminator_serves_distillation() -> None:
    netD = NLayerDiscriminator()
    images = torch.zeros(2, 3, 64, 64).uniform_(-1, 1)
    activations, logits = discriminator_features(netD, images)
    assert len(activations) == 4 and logits.shape == (2 * 36,)
    assert netD(images).shape == (2, 36)


def test_dihedral_covers_the_eight_symmetries() -> None:
    image = torch.arange(16.0).view(1, 1, 4, 4)
    seen = {tuple(_dihedral(image, k).flatten().tolist()) for k in range(8)}
    assert len(seen) == 8


def test_committed_teacher_matches_manifest_and_beats_bicubic() -> None:
    entry = read_manifest(PHOTOS)["photos-sr"]
    for name, digest in entry["sha256"].items():
        assert sha256_file(PHOTOS / f"{name}.safetensors") == digest
    recipe = SRRecipe(**entry["recipe"])
    assert entry["command"].startswith("gansearch zoo train photos-sr --seed 0")
    teacher = load_weights(
        ResnetGenerator(ngf=recipe.ngf, n_blocks=recipe.n_blocks), PHOTOS / "generator.safetensors"
    )
    load_weights(NLayerDiscriminator(ndf=recipe.ndf), PHOTOS / "discriminator.safetensors")
    metrics = entry["metrics"]
    assert metrics["test_psnr"] > metrics["bicubic_test_psnr"]
    assert metrics["test_ssim"] > metrics["bicubic_test_ssim"]
    total = sum((PHOTOS / f"{name}.safetensors").stat().st_size for name in entry["sha256"])
    assert total < 6_000_000
    test = load_photos_split("test")
    subset = type(test)(test.inputs[::6], test.targets[::6], test.lr[::6], test.names[::6])
    teacher_score = evaluate_sr(teacher, subset)
    bicubic = paired_scores(subset.inputs, subset.targets)
    assert teacher_score.psnr > bicubic.psnr and teacher_score.ssim > bicubic.ssim


def test_zoo_info_photos_reports_teacher_and_bicubic() -> None:
    from typer.testing import CliRunner

    from gansearch.cli import app

    result = CliRunner().invoke(app, ["zoo", "info", "photos"])
    assert result.exit_code == 0, result.output
    assert "bicubic 24.52 dB" in " ".join(result.output.split())  # = bicubic_baseline("test")
    assert "held out: chelsea, coffee, rocket, flower" in " ".join(result.output.split())


def test_zoo_train_photos_writes_weights_and_manifest_to_out(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from gansearch.cli import app
    from gansearch.zoo.photos import bicubic_baseline

    out = tmp_path / "photos"
    result = CliRunner().invoke(
        app, ["zoo", "train", "photos-sr", "--steps", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "manifest.json").read_text())["photos-sr"]
    assert record["command"] == "gansearch zoo train photos-sr --seed 0 --steps 2"
    assert record["metrics"]["bicubic_test_psnr"] == bicubic_baseline("test").psnr
    assert {"generator", "discriminator"} == set(record["sha256"])
