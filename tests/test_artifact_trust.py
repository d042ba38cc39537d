"""Untrusted artifacts run no code, malformed ones give one line, export keeps user files.

Every tampered artifact below has its manifest hash recomputed (``manifest_digest``), as an
attacker would, so the refusal comes from the trust and format checks, not the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from toy_models import ToyGenerator, toy_generator
from typer.testing import CliRunner

import gansearch
from gansearch.cli import app
from gansearch.compress import CompressionPlan, LayerPlan, apply_plan, describe
from gansearch.compress.manifest import (
    HASH_KEY,
    MANIFEST_FILE,
    ONNX_FILE,
    SAMPLES_FILE,
    WEIGHTS_FILE,
    ArtifactError,
    manifest_digest,
)
from gansearch.zoo.models import DCGANGenerator

pytestmark = pytest.mark.usefixtures("one_thread")

TOY_REFERENCE = "toy_models:ToyGenerator"
TOY_INPUT = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
MARKER = "MARKER"  # created in the artifact's parent by every hostile payload below
OTHER: dict[str, Path] = {}  # the int2 artifact, whose weights some cases swap in


def _compressed(weight: str) -> Any:
    teacher = toy_generator()
    structure = describe(teacher, TOY_INPUT)
    plan = CompressionPlan(
        layers={layer.name: LayerPlan(weight=weight) for layer in structure.layers}
    )
    return apply_plan(teacher, plan, TOY_INPUT, structure=structure)


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """An int4 toy artifact (the victim) and an int2 one (source of swapped weights)."""
    root = tmp_path_factory.mktemp("originals")
    result = {}
    for weight in ("int4", "int2"):
        compressed = _compressed(weight)
        result[weight] = (compressed, gansearch.export(compressed, root / weight))
    OTHER["int2"] = result["int2"][1]
    return result


@pytest.fixture
def artifact(originals, tmp_path: Path) -> Path:
    """A private copy of the int4 artifact, in its own folder (the marker goes beside it)."""
    return Path(shutil.copytree(originals["int4"][1], tmp_path / "box" / "artifact"))


# --------------------------------------------------------------------------- tampering


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / MANIFEST_FILE).read_text())


def _write(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` with a recomputed hash, as a forger would."""
    manifest[HASH_KEY] = manifest_digest(manifest)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def _write_text_rehashed(path: Path, manifest: dict[str, Any], text_of: Callable) -> None:
    """Write a manifest JSON cannot encode strictly (NaN...), its hash over the same text."""
    body = {k: v for k, v in manifest.items() if k != HASH_KEY}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (path / MANIFEST_FILE).write_text(text_of({**body, HASH_KEY: digest}))


def _refile(path: Path, manifest: dict[str, Any], name: str) -> None:
    data = (path / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _marker(path: Path) -> str:
    return str(path.parent / MARKER)


def _factory(reference: str, kwargs: Callable[[Path], dict]) -> Callable[[Path, dict], None]:
    def tamper(path: Path, manifest: dict) -> None:
        manifest["factory"] = {"reference": reference, "kwargs": kwargs(path)}
        _write(path, manifest)

    return tamper


def _shipped_script(path: Path, manifest: dict) -> None:
    (path / "payload.py").write_text(f"open({_marker(path)!r}, 'w').close()\n")
    manifest["factory"] = {
        "reference": "runpy:run_path",
        "kwargs": {"path_name": str(path / "payload.py")},
    }
    _write(path, manifest)


def _shipped_module(path: Path, manifest: dict) -> None:
    (path / "gs_payload_module.py").write_text(
        f"open({_marker(path)!r}, 'w').close()\ndef build():\n    return None\n"
    )
    manifest["factory"] = {"reference": "gs_payload_module:build", "kwargs": {}}
    _write(path, manifest)


def _edit(change: Callable[[Path, dict], None]) -> Callable[[Path, dict], None]:
    def tamper(path: Path, manifest: dict) -> None:
        change(path, manifest)
        _write(path, manifest)

    return tamper


def _rename_weights(name: str) -> Callable[[Path, dict], None]:
    return _edit(lambda p, m: m["files"].__setitem__(name, m["files"].pop(WEIGHTS_FILE)))


def _outside_absolute(path: Path, manifest: dict) -> None:
    outside = path.parent / "outside.bin"
    outside.write_bytes(b"x" * 12345)
    manifest["files"][str(outside)] = {"sha256": "0" * 64, "bytes": 12345}
    _write(path, manifest)


def _symlinked_weights(path: Path, manifest: dict) -> None:
    outside = path.parent / "real-weights.safetensors"
    shutil.move(path / WEIGHTS_FILE, outside)  # identical bytes: following it would load
    (path / WEIGHTS_FILE).symlink_to(outside)
    _write(path, manifest)


def _symlinked_manifest(path: Path, manifest: dict) -> None:
    _write(path, manifest)
    outside = path.parent / "real-manifest.json"
    shutil.move(path / MANIFEST_FILE, outside)
    (path / MANIFEST_FILE).symlink_to(outside)


def _weights_directory(path: Path, manifest: dict) -> None:
    (path / WEIGHTS_FILE).unlink()
    (path / WEIGHTS_FILE).mkdir()
    _write(path, manifest)


def _truncated_weights(path: Path, manifest: dict) -> None:
    file = path / WEIGHTS_FILE
    file.write_bytes(file.read_bytes()[:-64])
    _refile(path, manifest, WEIGHTS_FILE)
    _write(path, manifest)


def _swapped_weights(listing_too: bool) -> Callable[[Path, dict], None]:
    def tamper(path: Path, manifest: dict) -> None:
        other = OTHER["int2"]
        shutil.copy(other / WEIGHTS_FILE, path / WEIGHTS_FILE)
        _refile(path, manifest, WEIGHTS_FILE)
        if listing_too:
            manifest["encoding"]["tensors"] = _manifest(other)["encoding"]["tensors"]
        _write(path, manifest)

    return tamper


def _extra_tensor(listed: bool) -> Callable[[Path, dict], None]:
    def tamper(path: Path, manifest: dict) -> None:
        state = load_file(str(path / WEIGHTS_FILE))
        state["extra"] = torch.zeros(3)
        save_file(state, str(path / WEIGHTS_FILE))
        _refile(path, manifest, WEIGHTS_FILE)
        if listed:
            manifest["encoding"]["tensors"]["extra"] = {"dtype": "float32", "shape": [3]}
        _write(path, manifest)

    return tamper


def _non_finite_weights(value: float) -> Callable[[Path, dict], None]:
    def tamper(path: Path, manifest: dict) -> None:
        state = load_file(str(path / WEIGHTS_FILE))
        name = next(n for n, t in sorted(state.items()) if t.is_floating_point())
        state[name] = torch.full_like(state[name], value)
        save_file(state, str(path / WEIGHTS_FILE))
        _refile(path, manifest, WEIGHTS_FILE)
        _write(path, manifest)

    return tamper


def _with_metrics_text(literal: str) -> Callable[[Path, dict], None]:
    def tamper(path: Path, manifest: dict) -> None:
        manifest["metrics"] = {"fid": "PLACEHOLDER"}
        _write_text_rehashed(
            path, manifest, lambda m: json.dumps(m).replace('"PLACEHOLDER"', literal)
        )

    return tamper


def _deeply_nested(path: Path, manifest: dict) -> None:
    depth = 200_000
    text = json.dumps({**manifest, "metrics": "PLACEHOLDER"})
    (path / MANIFEST_FILE).write_text(text.replace('"PLACEHOLDER"', "[" * depth + "]" * depth))


def _huge_manifest(path: Path, manifest: dict) -> None:
    manifest["metrics"] = {"padding": "x" * (17 << 20)}
    _write(path, manifest)


def _set(*keys: str | int, value: Any) -> Callable[[Path, dict], None]:
    def change(path: Path, manifest: dict) -> None:
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return _edit(change)


CASES: dict[str, tuple[Callable[[Path, dict], None], str]] = {
    "os-system": (
        _factory("os:system", lambda p: {"command": f"touch {_marker(p)}"}),
        "not trusted",
    ),
    "subprocess-call": (
        _factory("subprocess:call", lambda p: {"args": ["touch", _marker(p)]}),
        "not trusted",
    ),
    "os-popen": (_factory("os:popen", lambda p: {"cmd": f"touch {_marker(p)}"}), "not trusted"),
    "runpy-shipped-script": (_shipped_script, "not trusted"),
    "module-shipped-in-artifact": (_shipped_module, "not trusted"),
    "builtins-exec": (
        _factory("builtins:exec", lambda p: {"source": f"open({_marker(p)!r}, 'w')"}),
        "not trusted",
    ),
    "zoo-dotted-walk-os": (
        _factory("gansearch.zoo.models:os.system", lambda p: {"command": f"touch {_marker(p)}"}),
        "not trusted",
    ),
    "zoo-dotted-walk-torch-load": (
        _factory("gansearch.zoo.models:torch.load", lambda p: {"f": str(p / WEIGHTS_FILE)}),
        "not trusted",
    ),
    "zoo-prefix-sibling": (
        _factory("gansearch.zoo.models:DCGANGenerator.__init__", lambda p: {}),
        "not trusted",
    ),
    "zoo-factory-command-kwargs": (
        _factory(
            "gansearch.zoo.models:DCGANGenerator", lambda p: {"command": f"touch {_marker(p)}"}
        ),
        "failed with kwargs",
    ),
    "zoo-factory-giant-kwargs": (
        _factory("gansearch.zoo.models:DCGANGenerator", lambda p: {"width": 10**6}),
        "elements",
    ),
    "reference-not-a-reference": (_factory("os.system; touch x", lambda p: {}), "must look like"),
    "reference-not-a-string": (_set("factory", "reference", value=7), "`factory.reference`"),
    "kwargs-not-a-dict": (_set("factory", "kwargs", value=["rm"]), "`factory.kwargs`"),
    "file-name-dotdot": (_rename_weights("../weights.safetensors"), "lists the file"),
    "file-name-absolute": (_outside_absolute, "lists the file"),
    "file-name-backslash": (_rename_weights("..\\weights.safetensors"), "lists the file"),
    "file-name-nul": (_rename_weights("weights.safetensors\x00"), "lists the file"),
    "onnx-file-outside": (_set("onnx", "file", value="../model.onnx"), "`onnx.file`"),
    "weights-symlink-outside": (_symlinked_weights, "symbolic link"),
    "manifest-symlink-outside": (_symlinked_manifest, "symbolic link"),
    "weights-is-a-directory": (_weights_directory, "not a regular file"),
    "nan-in-metrics": (_with_metrics_text("NaN"), "not valid JSON"),
    "infinity-in-metrics": (_with_metrics_text("-Infinity"), "not valid JSON"),
    "overflowing-float": (_with_metrics_text("1e999"), "not valid JSON"),
    "deep-nesting": (_deeply_nested, "nested too deeply"),
    "huge-manifest": (_huge_manifest, "at most"),
    "files-not-a-dict": (_set("files", value=[WEIGHTS_FILE]), "`files` must be dict"),
    "bytes-not-an-int": (_set("files", WEIGHTS_FILE, "bytes", value="100"), "bytes` must be"),
    "bytes-a-bool": (_set("files", WEIGHTS_FILE, "bytes", value=True), "bytes` must be"),
    "shape-not-ints": (_set("inputs", 0, "shape", value=[1, "8"]), "`inputs[0].shape`"),
    "giant-shape": (
        _set("inputs", 0, "shape", value=[1, 100_000, 100_000]),
        "`inputs[0].shape`",
    ),
    "unknown-dtype": (_set("inputs", 0, "dtype", value="__class__"), "`inputs[0].dtype`"),
    "dtype-torch-attribute": (_set("inputs", 0, "dtype", value="load"), "`inputs[0].dtype`"),
    "no-inputs": (_set("inputs", value=[]), "`inputs` must list 1.."),
    "inputs-not-a-list": (_set("inputs", value={"name": "z"}), "`inputs` must be list"),
    "input-name-not-text": (_set("inputs", 0, "name", value=3), "`inputs[0].name`"),
    "plan-not-a-dict": (_set("plan", value=[1, 2]), "`plan` must be dict"),
    "plan-unknown-encoding": (
        _set("plan", "layers", "out", "weight", value="int99"),
        "inconsistent",
    ),
    "structure-empty": (_set("structure", value={}), "inconsistent"),
    "tensor-listing-wrong-type": (_set("encoding", "tensors", "x", value=5), "encoding.tensors"),
    "stored-nbytes-string": (_set("stored_nbytes", value="12"), "`stored_nbytes`"),
    "truncated-weights": (_truncated_weights, "cannot be read"),
    "swapped-weights": (_swapped_weights(listing_too=False), "does not hold the tensors"),
    "swapped-weights-and-listing": (_swapped_weights(listing_too=True), "do not fit"),
    "extra-tensor-unlisted": (_extra_tensor(listed=False), "does not hold the tensors"),
    "extra-tensor-listed": (_extra_tensor(listed=True), "do not fit"),
    "nan-weights": (_non_finite_weights(float("nan")), "holds NaN or inf"),
    "inf-weights": (_non_finite_weights(float("inf")), "holds NaN or inf"),
}


@pytest.fixture
def tampered(artifact: Path, request: pytest.FixtureRequest) -> tuple[Path, str]:
    tamper, expected = CASES[request.param]
    tamper(artifact, _manifest(artifact))
    return artifact, expected


def _assert_nothing_ran(path: Path, path_before: list[str]) -> None:
    assert not (path.parent / MARKER).exists()
    assert sys.path == path_before and str(path) not in sys.path
    assert "gs_payload_module" not in sys.modules


@pytest.mark.parametrize("tampered", list(CASES), indirect=True)
def test_tampered_artifact_is_refused_in_one_line_and_runs_nothing(tampered) -> None:
    path, expected = tampered
    path_before = list(sys.path)
    with pytest.raises(ArtifactError) as caught:
        gansearch.load(path, trust=[TOY_REFERENCE])
    message = str(caught.value)
    assert "\n" not in message and expected in message, message
    assert "12345" not in message  # nothing about the file outside the artifact
    _assert_nothing_ran(path, path_before)


@pytest.mark.parametrize("case", ["os-system", "subprocess-call", "runpy-shipped-script"])
def test_the_payloads_are_live_when_trusted(artifact: Path, case: str) -> None:
    """Guards the table: trusting these references really would run the payload."""
    CASES[case][0](artifact, _manifest(artifact))
    reference = _manifest(artifact)["factory"]["reference"]
    with pytest.raises(ArtifactError, match="not a torch.nn.Module"):
        gansearch.load(artifact, trust=[reference])
    assert (artifact.parent / MARKER).exists()


def test_a_module_shipped_in_the_artifact_is_not_importable_even_if_trusted(
    artifact: Path,
) -> None:
    _shipped_module(artifact, _manifest(artifact))
    path_before = list(sys.path)
    with pytest.raises(ArtifactError, match="cannot import module 'gs_payload_module'"):
        gansearch.load(artifact, trust=["gs_payload_module:build"])
    _assert_nothing_ran(artifact, path_before)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A custom-model study whose generator is the toy class (so that one is trusted)."""
    root = tmp_path_factory.mktemp("study")
    (root / "trustdata.py").write_text(
        textwrap.dedent(
            """
            import torch

            def data():
                return torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
            """
        )
    )
    sys.path.insert(0, str(root))
    path = root / "s.yaml"
    path.write_text(
        "name: t\nobjectives: [stored_bytes, macs]\n"
        "evaluation: {num_samples: 16, seeds: [0], latency: {runs: 3, warmup: 0}}\n"
        f"model: {{generator: '{TOY_REFERENCE}', data: 'trustdata:data', latent_shape: [8]}}\n"
    )
    yield path
    sys.path.remove(str(root))


def _evaluate(study: Path, path: Path, *options: str) -> Any:
    return CliRunner().invoke(app, ["evaluate", str(study), "--artifact", str(path), *options])


def _assert_cli_one_line(result: Any, expected: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit)  # not an uncaught exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("gansearch: error: ") and expected in lines[0], lines[0]


@pytest.mark.parametrize("tampered", list(CASES), indirect=True)
def test_tampered_artifact_through_evaluate_cli(tampered, study: Path) -> None:
    path, expected = tampered
    path_before = list(sys.path)
    _assert_cli_one_line(_evaluate(study, path), expected)
    _assert_nothing_ran(path, path_before)


def test_real_console_script_refuses_os_system(run_cli, artifact: Path, study: Path) -> None:
    CASES["os-system"][0](artifact, _manifest(artifact))
    tests = str(Path(__file__).parent)
    env = {"PYTHONPATH": os.pathsep.join([str(study.parent), tests])}
    result = run_cli("evaluate", str(study), "--artifact", str(artifact), env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "not trusted" in result.stderr
    assert "--trust-factory os:system" in result.stderr
    assert not (artifact.parent / MARKER).exists()


# --------------------------------------------------------------------------- trusting


def test_untrusted_custom_factory_names_the_fix(originals) -> None:
    _, path = originals["int4"]
    with pytest.raises(ArtifactError) as caught:
        gansearch.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"trust=[{TOY_REFERENCE!r}]" in message and f"--trust-factory {TOY_REFERENCE}" in message


@pytest.mark.parametrize(
    "options",
    [
        {"trust": [TOY_REFERENCE]},
        {"factory": ToyGenerator},
        {"factory": TOY_REFERENCE},
        {"factory": lambda **kwargs: ToyGenerator(**kwargs)},
    ],
    ids=["trust", "factory-callable", "factory-reference", "factory-lambda"],
)
def test_trusted_custom_factory_loads(originals, options: dict) -> None:
    compressed, path = originals["int4"]
    loaded = gansearch.load(path, **options)
    with torch.no_grad():
        assert (loaded(TOY_INPUT) - compressed(TOY_INPUT)).abs().max() <= 1e-5


def test_callers_factory_replaces_a_hostile_reference(originals, artifact: Path) -> None:
    _set("factory", "reference", value="subprocess:getoutput")(artifact, _manifest(artifact))
    compressed, _ = originals["int4"]
    with pytest.raises(ArtifactError, match="not trusted"):
        gansearch.load(artifact)
    loaded = gansearch.load(artifact, factory=ToyGenerator)  # the manifest's kwargs ({})
    with torch.no_grad():
        assert (loaded(TOY_INPUT) - compressed(TOY_INPUT)).abs().max() <= 1e-5
    assert not (artifact.parent / MARKER).exists()


def test_trust_must_be_a_list(originals) -> None:
    with pytest.raises(ArtifactError, match=r"trust=\['toy_models:ToyGenerator'\]"):
        gansearch.load(originals["int4"][1], trust=TOY_REFERENCE)


def test_zoo_artifact_loads_with_no_options(tmp_path: Path) -> None:
    teacher = DCGANGenerator(latent_dim=8, width=4).eval()
    z = torch.randn(2, 8, 1, 1, generator=torch.Generator().manual_seed(0))
    structure = describe(teacher, z)
    compressed = apply_plan(teacher, CompressionPlan.identity(structure), z, structure=structure)
    path = gansearch.export(
        compressed, tmp_path / "zoo", example_input=z, teacher_kwargs={"latent_dim": 8, "width": 4}
    )
    assert _manifest(path)["factory"]["reference"] == "gansearch.zoo.models:DCGANGenerator"
    with torch.no_grad():
        assert (gansearch.load(path)(z) - compressed(z)).abs().max() <= 1e-5


def test_evaluate_cli_trusts_the_studys_generator_and_trust_factory(
    originals, study: Path, tmp_path: Path
) -> None:
    _, path = originals["int4"]
    assert _evaluate(study, path, "--json").exit_code == 0  # the study's own generator
    other = tmp_path / "other.yaml"
    other.write_text(study.read_text().replace(TOY_REFERENCE, "toy_models:toy_generator"))
    _assert_cli_one_line(_evaluate(other, path), "--trust-factory toy_models:ToyGenerator")
    result = _evaluate(other, path, "--json", "--trust-factory", TOY_REFERENCE)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["stored_bytes"]["value"] > 0


# --------------------------------------------------------------------------- export target


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _user_folder(tmp_path: Path) -> Path:
    target = tmp_path / "mine"
    (target / "sub").mkdir(parents=True)
    (target / "notes.txt").write_text("keep me")
    (target / "sub" / "data.bin").write_bytes(b"\x00\x01" * 100)
    return target


def test_export_refuses_a_folder_with_user_files(originals, tmp_path: Path) -> None:
    target = _user_folder(tmp_path)
    before = _snapshot(target)
    with pytest.raises(ArtifactError, match="--force") as caught:
        gansearch.export(originals["int4"][0], target)
    assert "\n" not in str(caught.value) and "notes.txt" in str(caught.value)
    assert _snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging left over


def test_export_with_force_replaces_only_artifact_files(originals, tmp_path: Path) -> None:
    target = _user_folder(tmp_path)
    (target / WEIGHTS_FILE).write_bytes(b"an old, unrelated file of that name")
    user_files = _snapshot(target)
    del user_files[WEIGHTS_FILE]
    gansearch.export(originals["int4"][0], target, force=True)
    after = _snapshot(target)
    assert {k: after[k] for k in user_files} == user_files  # byte-identical
    assert set(after) == {*user_files, MANIFEST_FILE, WEIGHTS_FILE, ONNX_FILE}
    gansearch.load(target, trust=[TOY_REFERENCE])
    gansearch.export(originals["int2"][0], target, force=True)  # again, over itself
    assert {k: _snapshot(target)[k] for k in user_files} == user_files


def test_force_never_replaces_a_folder_named_like_an_artifact_file(
    originals, tmp_path: Path
) -> None:
    target = tmp_path / "mine"
    (target / ONNX_FILE).mkdir(parents=True)
    (target / ONNX_FILE / "inside.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not a regular file"):
        gansearch.export(originals["int4"][0], target, force=True)
    assert (target / ONNX_FILE / "inside.txt").read_text() == "keep me"


def test_export_refuses_a_file_target(originals, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("keep me")
    with pytest.raises(ArtifactError, match="existing file"):
        gansearch.export(originals["int4"][0], target, force=True)
    assert target.read_text() == "keep me"


def test_reexport_over_a_previous_artifact(originals, tmp_path: Path) -> None:
    target = tmp_path / "artifact"
    gansearch.export(originals["int4"][0], target)
    (target / SAMPLES_FILE).write_bytes(b"an old sample grid")  # as `gansearch export` writes
    gansearch.export(originals["int2"][0], target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [MANIFEST_FILE, WEIGHTS_FILE, ONNX_FILE]
    )
    compressed = originals["int2"][0]
    with torch.no_grad():
        loaded = gansearch.load(target, trust=[TOY_REFERENCE])
        assert (loaded(TOY_INPUT) - compressed(TOY_INPUT)).abs().max() <= 1e-5
    # A stray entry makes it no longer exactly an artifact: refused, untouched.
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="mine.txt"):
        gansearch.export(originals["int4"][0], target)
    assert (target / "mine.txt").read_text() == "keep me"


def test_empty_folder_is_written(originals, tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    gansearch.export(originals["int4"][0], target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [MANIFEST_FILE, WEIGHTS_FILE, ONNX_FILE]
    )


def test_study_export_trusts_its_own_generator_and_keeps_user_files(
    study: Path, tmp_path: Path
) -> None:
    """`gansearch export` of a custom-model study: the artifact names the study's factory,
    loads back trusting it, and a folder with user files needs --force and keeps them."""
    config = tmp_path / "s.yaml"
    config.write_text(
        study.read_text().replace(TOY_REFERENCE, "toy_models:toy_generator")
        + f"output_dir: {tmp_path / 'out'}\nsearch: {{trials: 2}}\n"
    )
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(config)]).exit_code == 0
    target = _user_folder(tmp_path)
    before = _snapshot(target)
    export = [
        "export",
        str(config),
        "--pick",
        "best:stored_bytes",
        "--out",
        str(target),
        "--finetune-steps",
        "2",
    ]
    _assert_cli_one_line(runner.invoke(app, export), "--force")
    assert _snapshot(target) == before
    result = runner.invoke(app, [*export, "--force"])
    assert result.exit_code == 0, result.stderr
    after = _snapshot(target)
    assert {k: after[k] for k in before} == before
    assert set(after) == {*before, MANIFEST_FILE, WEIGHTS_FILE, ONNX_FILE, SAMPLES_FILE}
    assert _manifest(target)["factory"] == {"reference": "toy_models:toy_generator", "kwargs": {}}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
