"""The photographs benchmark end to end: evaluate, run, pareto, export, load, ONNX Runtime,
evaluate --artifact, all on the committed x4 super-resolution teacher with a small
protocol (the default study's protocol is exercised by `gansearch bench search`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import gansearch
from gansearch.cli import app
from gansearch.config import load_study
from gansearch.zoo.photos import bicubic_baseline

STUDY = Path("studies/photos.yaml")


def _small_study(tmp_path: Path) -> Path:
    data = yaml.safe_load(STUDY.read_text())
    data["name"] = "photos-small"
    data["output_dir"] = str(tmp_path / "out")
    data["evaluation"].update(
        {"num_samples": 16, "seeds": [0, 1], "batch_size": 16, "latency": {"runs": 3, "warmup": 0}}
    )
    data["search"].update({"trials": 4, "population": 4})
    data["space"] = {"prune": {"keep_ratios": [0.5, 0.75, 1.0]}, "bits": [8, 32], "codebook": [0]}
    data["space"]["lowrank"] = False
    path = tmp_path / "photos-small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_teacher_beats_bicubic_under_the_study_protocol(tmp_path: Path) -> None:
    from torch import nn

    from gansearch.benchmarks import load_benchmark
    from gansearch.evaluate import prepare_scorer

    study = _small_study(tmp_path)
    report = _cli("evaluate", str(study))
    metrics = report["metrics"]
    assert report["benchmark"] == "photos" and report["protocol"]["reference"] == "test"
    psnr, ssim = metrics["psnr"], metrics["ssim"]
    assert psnr["spread"] is not None and psnr["spread"] >= 0  # a noise floor is reported
    assert "fid" not in metrics  # no feature network: FID is never invented
    # The bicubic baseline on the very same patches: the identity of the (bicubic) input.
    config = load_study(study)
    bicubic = prepare_scorer(load_benchmark(config), config).score(nn.Identity()).values
    assert psnr["value"] > bicubic["psnr"] + 0.5
    assert ssim["value"] > bicubic["ssim"] + 0.05
    # On the whole test split, as the manifest records it.
    whole = bicubic_baseline("test")
    manifest = json.loads(Path("gansearch/zoo/weights/photos/manifest.json").read_text())
    recorded = manifest["photos-sr"]["metrics"]
    assert recorded["bicubic_test_psnr"] == pytest.approx(whole.psnr)
    assert recorded["test_psnr"] > whole.psnr + 1.0 and recorded["test_ssim"] > whole.ssim


@pytest.mark.slow
def test_run_export_load_onnx(tmp_path: Path) -> None:
    import onnxruntime

    study = _small_study(tmp_path)
    result = CliRunner().invoke(app, ["run", str(study)])
    assert result.exit_code == 0, result.output
    front = _cli("pareto", str(study))
    assert front["front"], front
    out = tmp_path / "artifact"
    result = CliRunner().invoke(
        app, ["export", str(study), "--pick", "knee", "--out", str(out), "--finetune-steps", "2"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"] == [{"name": "image", "shape": [1, 3, 64, 64], "dtype": "float32"}]
    assert (out / "samples.png").stat().st_size > 0
    model = gansearch.load(out)  # a zoo generator: trusted without flags
    image = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = model(image).numpy()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    (actual,) = session.run(None, {"image": image.numpy()})
    assert abs(actual - expected).max() < 1e-4
    scored = _cli("evaluate", str(study), "--artifact", str(out))["metrics"]
    knee = manifest["metrics"]
    assert scored["stored_bytes"]["value"] == knee["stored_bytes"]
    assert scored["psnr"]["value"] == pytest.approx(knee["psnr"], abs=1e-3)
