"""The digits benchmark: data split, committed weights, feature-network accuracy, recipes."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import torch

from gansearch.checkpoints import load_weights, read_state_dict, sha256_file
from gansearch.zoo import train
from gansearch.zoo.data import load_digits_split
from gansearch.zoo.models import DCGANDiscriminator, DCGANGenerator, DigitsFeatureNet
from gansearch.zoo.weights_io import WEIGHTS_ROOT

DIGITS = WEIGHTS_ROOT / "digits"


def test_split_is_fixed_disjoint_and_complete() -> None:
    train_split, test_split, everything = (load_digits_split(s) for s in ("train", "test", "all"))
    assert len(train_split) + len(test_split) == len(everything) == 1797
    assert train_split.images.shape[1:] == (1, 16, 16)
    assert float(everything.images.min()) >= -1.0 and float(everything.images.max()) <= 1.0
    # disjoint: no test image appears in the train split
    train_rows = {tuple(row.tolist()) for row in train_split.images.flatten(1)}
    assert not any(tuple(row.tolist()) in train_rows for row in test_split.images.flatten(1)[:50])
    assert torch.equal(load_digits_split("test").images, test_split.images)
    assert set(test_split.labels.tolist()) == set(range(10))


def test_committed_weights_load_safely_and_have_the_right_shapes() -> None:
    for name in ("generator", "discriminator", "features"):
        state = read_state_dict(DIGITS / f"{name}.safetensors")  # safetensors: no pickle
        assert all(isinstance(t, torch.Tensor) for t in state.values())
    teacher = load_weights(DCGANGenerator(), DIGITS / "generator.safetensors").eval()
    discriminator = load_weights(DCGANDiscriminator(), DIGITS / "discriminator.safetensors").eval()
    features = load_weights(DigitsFeatureNet(), DIGITS / "features.safetensors").eval()
    with torch.inference_mode():
        images = teacher(torch.randn(4, 64, 1, 1))
        assert images.shape == (4, 1, 16, 16)
        assert discriminator(images).shape == (4,)
        embedding, logits = features(images)
    assert embedding.shape == (4, DigitsFeatureNet.feature_dim)
    assert logits.shape == (4, 10)


def test_manifest_records_command_seed_and_hash() -> None:
    manifest = json.loads((DIGITS / "manifest.json").read_text())
    assert manifest["digits-dcgan"]["command"].startswith("gansearch zoo train digits-dcgan --seed")
    assert manifest["digits-features"]["command"].startswith(
        "gansearch zoo train digits-features --seed"
    )
    for entry in manifest.values():
        for name, digest in entry["sha256"].items():
            assert sha256_file(DIGITS / f"{name}.safetensors") == digest


def test_feature_network_reaches_97_percent_on_the_test_split() -> None:
    features = load_weights(DigitsFeatureNet(), DIGITS / "features.safetensors")
    assert train.accuracy(features, load_digits_split("test")) >= 0.97


def test_recipes_are_deterministic_per_seed_and_leave_global_rng_alone() -> None:
    recipe = replace(train.DCGANRecipe(seed=3, steps=2, batch_size=8), width=8)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, _ = train.train_dcgan(recipe)
    second, _ = train.train_dcgan(recipe)
    other, _ = train.train_dcgan(replace(recipe, seed=4))
    assert torch.equal(torch.get_rng_state(), before)
    states = [model.state_dict() for model in (first, second, other)]
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name
    assert any(not torch.equal(tensor, states[2][name]) for name, tensor in states[0].items())


def _package_fingerprint() -> dict[str, tuple[str, int]]:
    return {
        path.name: (sha256_file(path), path.stat().st_mtime_ns)
        for path in sorted(DIGITS.iterdir())
        if path.is_file()
    }


def test_zoo_train_writes_to_the_user_folder_never_into_the_package(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from gansearch.cli import app

    before = _package_fingerprint()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["zoo", "train", "digits-features", "--steps", "1"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "weights" / "digits"
    assert (written / "features.safetensors").is_file()
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["digits-features"]["command"].endswith("--steps 1")
    assert "weights: weights/digits" in result.stdout
    assert _package_fingerprint() == before


def test_zoo_train_refuses_out_with_update_bundled(tmp_path) -> None:
    from typer.testing import CliRunner

    from gansearch.cli import app

    before = _package_fingerprint()
    result = CliRunner().invoke(
        app, ["zoo", "train", "digits-features", "--out", str(tmp_path), "--update-bundled"]
    )
    assert result.exit_code == 2
    assert "give `--out` or `--update-bundled`, not both" in result.stderr
    assert _package_fingerprint() == before


def test_a_study_supernet_goes_to_the_study_and_is_read_before_the_bundled_one(
    tmp_path,
) -> None:
    from gansearch.config import parse_study
    from gansearch.supernets import SUPERNET_FILE, supernet_directory, supernet_output_directory

    config = parse_study({"name": "mine", "benchmark": "digits", "output_dir": str(tmp_path)})
    benchmark = SimpleNamespace(name="digits")  # only the name is read
    assert supernet_output_directory(config) == tmp_path / "supernet"
    assert supernet_directory(config, benchmark) == DIGITS  # nothing trained: the bundled one
    (tmp_path / "supernet").mkdir()
    (tmp_path / "supernet" / SUPERNET_FILE).write_bytes(b"")
    assert supernet_directory(config, benchmark) == tmp_path / "supernet"
    own = parse_study({"name": "w", "benchmark": "digits", "weights": str(tmp_path / "w")})
    assert supernet_output_directory(own) == tmp_path / "w"
