"""Artifacts: export -> load round trips, exact stored sizes, integrity checks, ONNX."""

from __future__ import annotations

import json
import math
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_models import toy_generator

import gansearch
from gansearch.compress import (
    CompressionPlan,
    LayerPlan,
    apply_plan,
    channel_importance,
    describe,
    encoded_state,
    magnitude_masks,
)
from gansearch.compress.artifact import MANIFEST_FILE, ONNX_FILE, WEIGHTS_FILE, ArtifactError
from gansearch.compress.manifest import manifest_digest
from gansearch.errors import GansearchError
from gansearch.zoo.models import DCGANGenerator

TOY_INPUT = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
TOY_REFERENCE = "toy_models:ToyGenerator"  # not a zoo factory: these tests trust it
DCGAN_INPUT = torch.randn(4, 64, 1, 1, generator=torch.Generator().manual_seed(2))


def _toy_plans() -> dict[str, CompressionPlan]:
    teacher = toy_generator()
    structure = describe(teacher, TOY_INPUT)
    names = [layer.name for layer in structure.layers]
    half = magnitude_masks(structure, channel_importance(teacher, structure, TOY_INPUT), 0.5)

    def every(**kwargs: object) -> dict[str, LayerPlan]:
        return {name: LayerPlan(**kwargs) for name in names}

    return {
        "identity": CompressionPlan.identity(structure),
        "float16": CompressionPlan(layers=every(weight="float16"), norm_dtype="float16"),
        "int4": CompressionPlan(layers=every(weight="int4")),
        "int2-binary-ternary": CompressionPlan(
            layers={
                "project": LayerPlan(weight="int2"),
                "up": LayerPlan(weight="binary"),
                "res.conv1": LayerPlan(weight="ternary"),
                "res.conv2": LayerPlan(weight="binary"),
                "side": LayerPlan(weight="int2"),
                "out": LayerPlan(weight="ternary"),
            }
        ),
        "codebook16": CompressionPlan(layers=every(weight="codebook16")),
        "pruned50-int4-lowrank": CompressionPlan(
            masks=half,
            layers={
                **every(weight="int4"),
                "up": LayerPlan(rank=3, weight="int4"),
                "res.conv2": LayerPlan(rank=4, weight="int4"),
            },
        ),
        "mixed-actquant": CompressionPlan(
            masks=half,
            layers={
                "project": LayerPlan(weight="int8", activation_bits=8),
                "up": LayerPlan(rank=4, weight="codebook16", activation_bits=6),
                "res.conv1": LayerPlan(weight="int3", activation_bits=4),
                "res.conv2": LayerPlan(weight="float16"),
                "side": LayerPlan(weight="ternary", activation_bits=8),
                "out": LayerPlan(weight="int5", activation_bits=8),
            },
            norm_dtype="float16",
        ),
    }


TOY_PLANS = _toy_plans()


def _dcgan_teacher() -> DCGANGenerator:
    torch.manual_seed(0)
    teacher = DCGANGenerator()
    with torch.no_grad():
        for module in teacher.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return teacher.eval()


def _dcgan_plans(structure) -> dict[str, CompressionPlan]:
    masks = {g.name: tuple(i % 4 != 0 for i in range(g.num_channels)) for g in structure.groups}
    return {
        "int4-actquant": CompressionPlan(
            layers={n: LayerPlan(weight="int4", activation_bits=8) for n in ("net.0", "net.3")}
        ),
        "pruned-lowrank-codebook": CompressionPlan(
            masks=masks,
            layers={
                "net.0": LayerPlan(weight="codebook16"),
                "net.3": LayerPlan(rank=24, weight="int4"),
                "net.6": LayerPlan(rank=12, weight="ternary", activation_bits=6),
                "net.9": LayerPlan(weight="binary"),
            },
            norm_dtype="float16",
        ),
    }


@pytest.fixture(scope="module")
def toy_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    teacher = toy_generator()
    structure = describe(teacher, TOY_INPUT)
    root = tmp_path_factory.mktemp("toy")
    artifacts = {}
    for name, plan in TOY_PLANS.items():
        compressed = apply_plan(teacher, plan, TOY_INPUT, structure=structure)
        path = gansearch.export(compressed, root / name, metrics={"fid": 1.5, "plan": name})
        artifacts[name] = (compressed, path)
    return artifacts


def _payload_nbytes(file: Path) -> int:
    """Bytes of a safetensors file after its 8-byte header length and JSON header."""
    data = file.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    return len(data) - 8 - header_length


def _max_abs_diff(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", list(TOY_PLANS))
def test_toy_round_trip_outputs_and_payload(toy_artifacts, name: str) -> None:
    compressed, path = toy_artifacts[name]
    loaded = gansearch.load(path, trust=[TOY_REFERENCE])
    assert isinstance(loaded, torch.nn.Module)
    assert not loaded.training
    assert _max_abs_diff(loaded, compressed, TOY_INPUT) <= 1e-5
    # Re-encoding the loaded generator reproduces the stored payload bit for bit.
    original, reloaded = encoded_state(compressed), encoded_state(loaded)
    assert original.keys() == reloaded.keys()
    for key, tensor in original.items():
        assert torch.equal(tensor, reloaded[key]), key
    # The predicted stored bytes are the payload of weights.safetensors.
    predicted = compressed.stored_nbytes()
    assert _payload_nbytes(path / WEIGHTS_FILE) == predicted, name
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert manifest["stored_nbytes"] == predicted
    assert manifest["plan"] == compressed.plan.to_dict()
    assert manifest["metrics"] == {"fid": 1.5, "plan": name}
    assert manifest["factory"]["reference"] == TOY_REFERENCE


def test_export_leaves_the_candidate_usable(toy_artifacts) -> None:
    compressed, path = toy_artifacts["mixed-actquant"]
    with torch.no_grad():
        before = compressed(TOY_INPUT).clone()
    gansearch.export(compressed, path)  # overwriting an artifact is allowed
    with torch.no_grad():
        assert torch.equal(compressed(TOY_INPUT), before)
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def dcgan_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    teacher = _dcgan_teacher()
    structure = describe(teacher, DCGAN_INPUT)
    root = tmp_path_factory.mktemp("dcgan")
    artifacts = {}
    for name, plan in _dcgan_plans(structure).items():
        compressed = apply_plan(teacher, plan, DCGAN_INPUT, structure=structure)
        path = gansearch.export(compressed, root / name, example_input=DCGAN_INPUT)
        artifacts[name] = (compressed, path)
    return artifacts


def test_dcgan_round_trips(dcgan_artifacts) -> None:
    for name, (compressed, path) in dcgan_artifacts.items():
        loaded = gansearch.load(path)
        assert _max_abs_diff(loaded, compressed, DCGAN_INPUT) <= 1e-5, name
        predicted = compressed.stored_nbytes()
        assert _payload_nbytes(path / WEIGHTS_FILE) == predicted, name
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        assert manifest["factory"] == {
            "reference": "gansearch.zoo.models:DCGANGenerator",
            "kwargs": {},
        }
        assert manifest["inputs"] == [{"name": "input", "shape": [1, 64, 1, 1], "dtype": "float32"}]


def test_int4_weight_takes_half_a_byte(toy_artifacts) -> None:
    from safetensors import safe_open

    compressed, path = toy_artifacts["int4"]
    with safe_open(str(path / WEIGHTS_FILE), framework="pt") as handle:
        codes = handle.get_tensor("res.conv1.weight.codes")
    numel = compressed.module.res.conv1.weight.numel()  # 12 * 12 * 3 * 3
    assert codes.dtype == torch.uint8
    assert codes.nbytes == math.ceil(numel / 2)


def test_load_uses_no_pickle(toy_artifacts, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle / torch.load used while loading an artifact")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    compressed, path = toy_artifacts["mixed-actquant"]
    assert _max_abs_diff(gansearch.load(path, trust=[TOY_REFERENCE]), compressed, TOY_INPUT) <= 1e-5


def test_onnx_runs_and_matches_torch(toy_artifacts, dcgan_artifacts) -> None:
    import onnx
    from onnx.reference import ReferenceEvaluator

    cases = [
        (*toy_artifacts["mixed-actquant"], TOY_INPUT),
        (*dcgan_artifacts["pruned-lowrank-codebook"], DCGAN_INPUT),
    ]
    for compressed, path, x in cases:
        model = onnx.load(str(path / ONNX_FILE))
        onnx.checker.check_model(model, full_check=True)
        weights = {init.name for init in model.graph.initializer}
        assert not any("parametrizations" in name for name in weights)  # plain float graph
        (output,) = ReferenceEvaluator(model).run(None, {"input": x.numpy()})
        with torch.no_grad():
            expected = compressed(x).numpy()
        assert output.shape == expected.shape  # batch 4 through a graph traced at batch 1
        assert np.abs(output - expected).max() <= 1e-4


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def artifact(toy_artifacts, tmp_path: Path) -> Path:
    """A private copy of a valid artifact, free to damage."""
    _, path = toy_artifacts["pruned50-int4-lowrank"]
    return Path(shutil.copytree(path, tmp_path / "artifact"))


def test_flipped_weight_byte_is_refused(artifact: Path) -> None:
    file = artifact / WEIGHTS_FILE
    data = bytearray(file.read_bytes())
    data[-10] ^= 0x01
    file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256"):
        gansearch.load(artifact, trust=[TOY_REFERENCE])


def test_truncated_weights_are_refused(artifact: Path) -> None:
    file = artifact / WEIGHTS_FILE
    file.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="truncated"):
        gansearch.load(artifact, trust=[TOY_REFERENCE])


def test_edited_manifest_is_refused(artifact: Path) -> None:
    file = artifact / MANIFEST_FILE
    manifest = json.loads(file.read_text())
    manifest["plan"]["layers"]["out"]["activation_bits"] = 4
    file.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="edited or corrupted"):
        gansearch.load(artifact, trust=[TOY_REFERENCE])


def test_manifest_inconsistent_with_weights_is_refused_even_with_a_fixed_hash(
    artifact: Path,
) -> None:
    file = artifact / MANIFEST_FILE
    manifest = json.loads(file.read_text())
    manifest["plan"]["layers"]["side"]["weight"] = "int8"  # weights hold int4 codes
    manifest["manifest_sha256"] = manifest_digest(manifest)
    file.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="do not fit"):
        gansearch.load(artifact, trust=[TOY_REFERENCE])


def test_truncated_manifest_is_refused(artifact: Path) -> None:
    file = artifact / MANIFEST_FILE
    file.write_text(file.read_text()[:200])
    with pytest.raises(ArtifactError, match="not valid JSON"):
        gansearch.load(artifact, trust=[TOY_REFERENCE])


@pytest.mark.parametrize("missing", [WEIGHTS_FILE, ONNX_FILE, MANIFEST_FILE])
def test_missing_file_is_refused(artifact: Path, missing: str) -> None:
    (artifact / missing).unlink()
    with pytest.raises(ArtifactError, match="missing|no manifest.json"):
        gansearch.load(artifact, trust=[TOY_REFERENCE])


def test_missing_artifact_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="artifact not found"):
        gansearch.load(tmp_path / "nowhere")


def test_errors_are_one_line_gansearch_errors(tmp_path: Path) -> None:
    with pytest.raises(GansearchError) as caught:
        gansearch.load(tmp_path / "nowhere")
    assert "\n" not in str(caught.value)


def test_refuses_to_overwrite_a_non_artifact_directory(toy_artifacts, tmp_path: Path) -> None:
    compressed, _ = toy_artifacts["int4"]
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="refusing to write into .*--force"):
        gansearch.export(compressed, target)
    assert (target / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_factory_that_builds_another_structure_is_refused(toy_artifacts, tmp_path: Path) -> None:
    compressed, _ = toy_artifacts["int4"]
    with pytest.raises(ArtifactError, match="structure differs"):
        gansearch.export(compressed, tmp_path / "a", teacher_kwargs={"width": 16})
    with pytest.raises(ArtifactError, match="must look like"):
        gansearch.export(compressed, tmp_path / "a", teacher_factory="os.system; rm")
    assert not (tmp_path / "a").exists()


def test_non_json_metrics_are_refused(toy_artifacts, tmp_path: Path) -> None:
    compressed, _ = toy_artifacts["int4"]
    with pytest.raises(ArtifactError, match="JSON"):
        gansearch.export(compressed, tmp_path / "a", metrics={"fid": float("nan")})
