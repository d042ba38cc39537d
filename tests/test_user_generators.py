"""Users' own generators, configured in YAML alone, from `gansearch run` to ONNX Runtime.

Each generator of :mod:`tests.user_generators` (pix2pix U-Net, CycleGAN ResNet, DCGAN
with a reshaped Linear, Upsample + grouped conv, class-conditional, one fed by an inputs
function and built with ``generator_kwargs``) goes through the real console script:
``gansearch space`` (its groups and exclusions), ``run``, ``export``, then
``gansearch.load`` and ``onnxruntime`` on the artifact's ``model.onnx`` (same outputs),
then ``gansearch evaluate --artifact``. The in-process tests cover format-1 manifests,
the norm-dtype rule (a scored candidate is exactly what its artifact stores), a
class-conditional discriminator and an artifact fed another study's inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import gansearch_executable

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tests.user_generators"

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class UserStudy:
    """One user's study and what `space` / the artifact must show for it."""

    model: dict
    objectives: list[str]
    groups: dict[str, int]
    """Prunable group -> channels (positions, for groups feeding a grouped conv)."""
    inputs: list[tuple[str, list[int], str]]
    """The manifest's inputs: name, one-sample shape, dtype."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Excluded group -> a phrase its reason must contain."""
    constraints: list[str] = field(default_factory=list)
    pick: str = "knee"
    """``knee`` or the reference plan whose trial is exported (e.g. ``prune50``)."""
    sample_rows: int = 2
    """Rows of samples.png: input (images only) | teacher | student | target (paired)."""


UNET_GROUPS = {  # the three-level pix2pix U-Net, ngf 8: every conv but the output's
    "model.model.0": 8,
    "model.model.1.model.1": 16,
    "model.model.1.model.3.model.1": 16,
    "model.model.1.model.3.model.3": 16,
    "model.model.1.model.5": 8,
}
RESNET_GROUPS = {  # ngf 4: stem, 2 downsamplings, the residual trunk, 2 blocks, 2 upsamplings
    "model.1": 4,
    "model.4": 8,
    "model.7": 16,
    "model.10.conv_block.1": 16,
    "model.11.conv_block.1": 16,
    "model.12": 8,
    "model.15": 4,
}

STUDIES = {
    "unet": UserStudy(
        model={
            "generator": f"{PACKAGE}:unet",
            "data": f"{PACKAGE}:denoise_pairs",
            "inputs": "paired",
        },
        objectives=["psnr", "stored_bytes", "macs"],
        constraints=["psnr >= 0.95 * teacher"],
        groups=UNET_GROUPS,
        inputs=[("image", [1, 1, 16, 16], "float32")],
        sample_rows=4,
    ),
    "srgan": UserStudy(
        model={
            "generator": f"{PACKAGE}:srresnet",
            "data": f"{PACKAGE}:downscaled_pairs",
            "inputs": "paired",
        },
        objectives=["psnr", "stored_bytes"],
        # the scalar PReLUs cost no genes; the trunk is coupled through the global skip
        groups={"head.0": 8, "body.0": 8},
        excluded={"upsample.0": "a PixelShuffle takes its input channels in blocks"},
        inputs=[("image", [1, 1, 8, 8], "float32")],
        sample_rows=4,
    ),
    "resnet": UserStudy(
        model={
            "generator": f"{PACKAGE}:resnet_generator",
            "data": f"{PACKAGE}:horses_and_zebras",
            "features": f"{PACKAGE}:features",
            "inputs": "unpaired",
        },
        objectives=["fid", "stored_bytes"],
        groups=RESNET_GROUPS,
        inputs=[("image", [1, 3, 16, 16], "float32")],
        sample_rows=3,
    ),
    "dcgan": UserStudy(
        model={
            "generator": f"{PACKAGE}:dcgan",
            "data": f"{PACKAGE}:real_images",
            "latent_shape": [16],
        },
        objectives=["teacher_psnr", "stored_bytes", "macs"],
        constraints=["teacher_psnr >= 10"],
        groups={"net.2": 8},
        # view(-1, self.width, 4, 4) hard-codes the projection's channel count
        excluded={"fc": "view/reshape in the forward code fixes the channel count"},
        inputs=[("z", [1, 16], "float32")],
    ),
    "grouped": UserStudy(
        model={
            "generator": f"{PACKAGE}:grouped",
            "data": f"{PACKAGE}:real_images",
            "latent_shape": [8, 4, 4],
        },
        objectives=["teacher_l1", "stored_bytes"],
        # 16 channels in and out of a groups=4 conv: 4 positions, each in all 4 blocks
        groups={"stem.0": 4, "up1.1": 4},
        inputs=[("z", [1, 8, 4, 4], "float32")],
        pick="prune50",
    ),
    "conditional": UserStudy(
        model={
            "generator": f"{PACKAGE}:conditional",
            "data": f"{PACKAGE}:real_images",
            "inputs": "conditional",
            "latent_shape": [16],
            "num_classes": 4,
        },
        objectives=["teacher_psnr", "stored_bytes"],
        groups={"fc": 16, "up.1": 16},  # view(n, -1, 4, 4): the projection stays prunable
        inputs=[("z", [1, 16], "float32"), ("label", [1], "int64")],
    ),
    "noise": UserStudy(
        model={
            "generator": f"{PACKAGE}:noise_generator",
            "generator_kwargs": {"width": 8},
            "data": f"{PACKAGE}:real_images",
            "inputs": f"{PACKAGE}:noise_inputs",
        },
        objectives=["teacher_psnr", "macs"],
        groups={"fc": 8, "up": 8},  # width 8, not the factory's default 4
        inputs=[("input0", [1, 8], "float32"), ("input1", [1, 1, 16, 16], "float32")],
    ),
}


def write_study(tmp_path: Path, name: str) -> Path:
    study = STUDIES[name]
    model = dict(study.model)
    evaluation = {
        "num_samples": 16,
        "seeds": [0, 1],
        "batch_size": 16,
        "kid_subsets": 5,
        "kid_subset_size": 8,
        "latency": {"runs": 3, "warmup": 0},
    }
    if name == "unet":  # a trained U-Net (as users have), scored on held-out pairs
        model["generator_checkpoint"] = str(trained_unet(tmp_path))
        evaluation["reference"] = "test"
    data = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "model": model,
        "objectives": study.objectives,
        "evaluation": evaluation,
        "space": {
            "prune": {"min_keep": 0.5, "keep_ratios": [0.5, 1.0]},
            "ofa": False,
            "bits": [4, 8, 32],
            "codebook": [0, 4],
            "lowrank": {"ratios": [0, 0.5]},
        },
        "search": {
            "strategy": "optuna",
            "trials": 5,
            "population": 4,
            "constraints": study.constraints,
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def trained_unet(tmp_path: Path) -> Path:
    """The U-Net trained for 200 seeded steps on the train pairs, saved as a checkpoint."""
    from gansearch.checkpoints import save_weights
    from tests.user_generators import denoise_pairs, unet

    model = unet().train()
    noisy, clean = denoise_pairs(split="train")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        index = torch.randint(0, noisy.shape[0], (16,), generator=generator)
        loss = (model(noisy[index]) - clean[index]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path / "unet.safetensors"
    save_weights(model.eval(), path)
    return path


def gansearch(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The console script, as a user runs it (their package on PYTHONPATH), checked."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "GANSEARCH_CACHE": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [*gansearch_executable(), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def trials(tmp_path: Path, name: str) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def onnx_feeds(inputs: list[tuple[str, list[int], str]], n: int) -> dict[str, np.ndarray]:
    """``n`` random samples of each input (labels in [0, 4))."""
    generator = torch.Generator().manual_seed(5)
    feeds = {}
    for name, shape, dtype in inputs:
        size = (n, *shape[1:])
        if dtype == "int64":
            feeds[name] = torch.randint(0, 4, size, generator=generator).numpy()
        else:
            feeds[name] = torch.randn(size, generator=generator).numpy()
    return feeds


def check_space(tmp_path: Path, study_file: Path, study: UserStudy) -> None:
    report = json.loads(gansearch(tmp_path, "space", str(study_file), "--json").stdout)
    assert {g["name"]: g["channels"] for g in report["groups"]} == study.groups
    excluded = {g["name"]: g["reason"] for g in report["excluded_groups"]}
    assert set(excluded) == set(study.excluded)
    for group, phrase in study.excluded.items():
        assert phrase in excluded[group]
    masks = [gene for gene in report["genes"] if gene["kind"] == "mask"]
    assert len(masks) == len(study.groups)


def exported_trial(tmp_path: Path, name: str, study: UserStudy) -> list[str]:
    """The `gansearch export` options choosing the trial to export."""
    if study.pick == "knee":
        return ["--pick", "knee"]
    chosen = [t for t in trials(tmp_path, name) if t.user_attrs.get("reference") == study.pick]
    return ["--trial", str(chosen[0].number)]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDIES))
def test_user_generator_from_yaml_to_onnx(tmp_path: Path, name: str) -> None:
    import onnxruntime

    import gansearch as gs

    study = STUDIES[name]
    study_file = write_study(tmp_path, name)
    check_space(tmp_path, study_file, study)

    gansearch(tmp_path, "run", str(study_file))
    done = trials(tmp_path, name)
    assert len(done) == 5 and all(t.state.name == "COMPLETE" for t in done), [
        t.user_attrs.get("fail_reason") for t in done
    ]
    teacher = next(t for t in done if t.user_attrs.get("reference") == "teacher")

    out = tmp_path / "artifact"
    choice = exported_trial(tmp_path, name, study)
    exported = gansearch(
        tmp_path, "export", str(study_file), *choice, "--out", str(out), "--finetune-steps", "2"
    )
    assert "samples.png" in exported.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(i["name"], i["shape"], i["dtype"]) for i in manifest["inputs"]] == study.inputs
    assert manifest["onnx"]["input_names"] == [i[0] for i in study.inputs]
    assert manifest["factory"] == {
        "reference": study.model["generator"],
        "kwargs": study.model.get("generator_kwargs", {}),
    }
    # a compressed candidate, smaller than the teacher
    assert manifest["stored_nbytes"] < teacher.user_attrs["metrics"]["stored_bytes"]
    assert _sample_rows(out / "samples.png") == study.sample_rows

    loaded = gs.load(out, trust=[study.model["generator"]])
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    graph_inputs = [(i.name, i.type) for i in session.get_inputs()]
    onnx_types = {"float32": "tensor(float)", "int64": "tensor(int64)"}
    assert graph_inputs == [(n, onnx_types[dtype]) for n, _, dtype in study.inputs]
    feeds = onnx_feeds(study.inputs, 3)  # a batch other than the exported one
    (onnx_out,) = session.run(None, feeds)
    with torch.no_grad():
        torch_out = loaded(*(torch.from_numpy(feeds[n]) for n, _, _ in study.inputs))
    assert onnx_out.shape == tuple(torch_out.shape) == (3, *torch_out.shape[1:])
    np.testing.assert_allclose(onnx_out, torch_out.numpy(), atol=1e-4, rtol=0)
    _check_rebuilt_module(name, loaded.module, manifest)

    evaluated = gansearch(tmp_path, "evaluate", str(study_file), "--artifact", str(out), "--json")
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert metrics["stored_bytes"]["value"] == manifest["stored_nbytes"]
    for objective in study.objectives:
        assert np.isfinite(metrics[objective]["value"])
    if name == "unet":
        _check_paired_metrics(tmp_path, study_file, out, teacher, metrics)


def _sample_rows(path: Path) -> int:
    """Rows of a sample grid of 8 columns (each cell is square)."""
    from matplotlib.image import imread

    height, width = imread(path).shape[:2]
    return round(8 * height / width)


def _check_rebuilt_module(name: str, module: torch.nn.Module, manifest: dict) -> None:
    """What only the factory (and its kwargs) can have rebuilt."""
    if name == "noise":  # built by noise_generator(width=8), not the default width 4
        assert module.width == 8
    if name == "grouped":  # pruned in whole positions: every conv group lost the same channels
        kept = sum(manifest["plan"]["masks"]["stem.0"])
        assert kept < 4
        assert module.stem[0].out_channels == 4 * kept
        assert module.up1[1].groups == 4 and module.up1[1].in_channels == 4 * kept


def _check_paired_metrics(
    tmp_path: Path, study_file: Path, artifact: Path, teacher, metrics: dict
) -> None:
    """PSNR/SSIM against the held-out targets, with their noise floor, everywhere."""
    for trial in trials(tmp_path, "unet"):
        for metric in ("psnr", "ssim"):
            assert np.isfinite(trial.user_attrs["metrics"][metric])
            assert trial.user_attrs["spread"][metric] > 0
    # trained: the teacher clearly beats the noisy input (about 20 dB on these pairs)
    assert teacher.user_attrs["metrics"]["psnr"] > 25
    assert metrics["psnr"]["spread"] > 0 and len(metrics["psnr"]["per_seed"]) == 2
    assert -1 <= metrics["ssim"]["value"] <= 1 and metrics["ssim"]["spread"] > 0
    table = gansearch(tmp_path, "evaluate", str(study_file), "--artifact", str(artifact)).stdout
    assert "psnr" in table and "ssim" in table


# --------------------------------------------------------------------------- in process


def _evaluator(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch):
    """The study's CandidateEvaluator, as `run` and `export` build it."""
    from gansearch.candidates import CandidateEvaluator
    from gansearch.config import load_study

    monkeypatch.syspath_prepend(str(ROOT))
    return CandidateEvaluator(load_study(write_study(tmp_path, name)))


def _export(evaluator, compressed, out: Path) -> Path:
    """Export as `gansearch export` does (the study's factory and input names)."""
    from gansearch.compress.artifact import export

    spec = evaluator.config.model
    return export(
        compressed,
        out,
        example_input=tuple(part[:1] for part in evaluator.example),
        input_names=evaluator.benchmark.inputs.names,
        teacher_factory=spec.generator,
        teacher_kwargs=dict(spec.generator_kwargs),
    )


def _half_masks(evaluator) -> dict[str, tuple[bool, ...]]:
    return {
        g.name: tuple(i % 2 == 0 for i in range(g.num_channels))
        for g in evaluator.space.structure.groups
    }


def test_a_format_1_manifest_still_loads(tmp_path: Path, monkeypatch) -> None:
    """An artifact written before `inputs` (format 1: one `input`, `onnx.input_name`)."""
    import onnx
    import onnxruntime

    import gansearch as gs
    from gansearch.compress.manifest import HASH_KEY, file_record, manifest_digest
    from gansearch.compress.plan import CompressionPlan, LayerPlan

    evaluator = _evaluator(tmp_path, "dcgan", monkeypatch)
    plan = CompressionPlan(masks=_half_masks(evaluator), layers={"net.5": LayerPlan(weight="int8")})
    out = _export(evaluator, evaluator.build(plan), tmp_path / "v2")
    current = gs.load(out, trust=["tests.user_generators:dcgan"])

    # Format 1 named its one ONNX input "input"; rename the graph's input accordingly.
    graph = onnx.load(str(out / "model.onnx"))
    (old_name,) = [i.name for i in graph.graph.input]
    graph.graph.input[0].name = "input"
    for node in graph.graph.node:
        node.input[:] = ["input" if name == old_name else name for name in node.input]
    onnx.save(graph, str(out / "model.onnx"))

    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest.pop("inputs")
    body = {key: value for key, value in manifest.items() if key != HASH_KEY}
    body["format_version"] = 1
    body["input"] = {"shape": entry["shape"], "dtype": entry["dtype"]}
    body["onnx"] = {
        **{k: v for k, v in body["onnx"].items() if k != "input_names"},
        "input_name": "input",
    }
    body["files"]["model.onnx"] = file_record(out / "model.onnx")
    (out / "manifest.json").write_text(json.dumps({**body, HASH_KEY: manifest_digest(body)}))

    legacy = gs.load(out, trust=["tests.user_generators:dcgan"])
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = current(z)
        torch.testing.assert_close(legacy(z), expected, rtol=0, atol=0)
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (onnx_out,) = session.run(None, {body["onnx"]["input_name"]: z.numpy()})
    np.testing.assert_allclose(onnx_out, expected.numpy(), atol=1e-4, rtol=0)

    from gansearch.evaluate import evaluate_artifact

    score = evaluate_artifact(
        evaluator.benchmark, evaluator.config, out, trust=["tests.user_generators:dcgan"]
    )
    assert score.values["stored_bytes"] == body["stored_nbytes"]


@pytest.mark.parametrize("finetune_steps", [0, 1])
def test_a_scored_candidate_is_what_its_artifact_stores(
    tmp_path: Path, monkeypatch, finetune_steps: int
) -> None:
    """Pruned with float16 norms: BatchNorm recalibration (and distillation) write float32
    statistics; the scored module must hold the stored float16 values, so that the search,
    the artifact and its ONNX graph compute one function."""
    import onnxruntime

    import gansearch as gs
    from gansearch.compress.plan import CompressionPlan, LayerPlan

    evaluator = _evaluator(tmp_path, "grouped", monkeypatch)
    plan = CompressionPlan(
        masks=_half_masks(evaluator),
        layers={"up1.1": LayerPlan(weight="int8", activation_bits=8)},
        norm_dtype="float16",
    )
    built = evaluator.build(plan)
    if finetune_steps:
        built, _ = evaluator.finetune(built, finetune_steps)
    for module in built.module.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor in (module.running_mean, module.running_var, module.weight, module.bias):
                assert torch.equal(tensor, tensor.half().float())

    out = _export(evaluator, built, tmp_path / "artifact")
    loaded = gs.load(out, trust=["tests.user_generators:grouped"])
    z = torch.randn(64, 8, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scored = built(z)
        torch.testing.assert_close(loaded(z), scored, rtol=0, atol=0)
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (onnx_out,) = session.run(None, {"z": z.numpy()})
    np.testing.assert_allclose(onnx_out, scored.numpy(), atol=1e-4, rtol=0)
    quality = {name: value for name, value in evaluator.scorer.score(built).values.items()}
    reloaded = evaluator.scorer.score(loaded).values
    del quality["latency_ms"], reloaded["latency_ms"]
    assert reloaded == quality


def test_round_to_norm_dtype_rounds_norms_and_biases_only() -> None:
    from gansearch.compress.apply import CompressedGenerator, round_to_norm_dtype
    from gansearch.compress.groups import describe
    from gansearch.compress.plan import CompressionPlan
    from tests.user_generators import grouped

    model = grouped()
    z = torch.randn(2, 8, 4, 4)
    structure = describe(model, z)
    weight = model.stem[0].weight.clone()
    for dtype, exact in (("float32", False), ("float16", True)):
        compressed = CompressedGenerator(grouped(), CompressionPlan(norm_dtype=dtype), structure)
        norm, conv = compressed.module.stem[1], compressed.module.up2[1]
        with torch.no_grad():
            norm.running_mean.add_(1e-4)
        assert round_to_norm_dtype(compressed) is compressed
        for tensor in (norm.running_mean, norm.running_var, norm.weight, conv.bias):
            assert torch.equal(tensor, tensor.half().float()) == exact
        assert torch.equal(compressed.module.stem[0].weight, weight)  # weights untouched


def test_a_conditional_discriminator_is_refused_where_a_loss_calls_it(
    tmp_path: Path, monkeypatch
) -> None:
    """Distillation calls D(images); a D(images, labels) used by a loss term would fail
    every trial, so the study is refused at load, in one line naming the term."""
    from gansearch.benchmarks import load_benchmark
    from gansearch.config import load_study
    from gansearch.errors import FactoryError

    monkeypatch.syspath_prepend(str(ROOT))
    path = write_study(tmp_path, "conditional")
    data = yaml.safe_load(path.read_text())
    data["model"]["discriminator"] = f"{PACKAGE}:projection_discriminator"
    path.write_text(yaml.safe_dump(data))
    load_benchmark(load_study(path))  # no loss term calls it: accepted

    data["distill"] = {"steps": 2, "losses": {"pixel": 1.0, "adversarial": 0.1}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(FactoryError) as error:
        load_benchmark(load_study(path))
    message = str(error.value)
    assert "\n" not in message
    assert "projection_discriminator" in message and "`distill.losses.adversarial`" in message
    assert "missing 1 required positional argument: 'labels'" in message


def test_an_artifact_fed_another_studys_inputs_is_refused(tmp_path: Path, monkeypatch) -> None:
    """`gansearch evaluate STUDY --artifact DIR` with another study's artifact: one line
    naming both input lists, not a shape error from inside the generator."""
    from gansearch.compress.artifact import ArtifactError
    from gansearch.compress.plan import CompressionPlan
    from gansearch.evaluate import evaluate_artifact

    dcgan = _evaluator(tmp_path, "dcgan", monkeypatch)
    out = _export(dcgan, dcgan.build(CompressionPlan()), tmp_path / "dcgan-artifact")
    trust = ["tests.user_generators:dcgan"]
    assert evaluate_artifact(dcgan.benchmark, dcgan.config, out, trust=trust).values
    for other, fed in (
        ("conditional", "z [16] float32, label [] int64"),
        ("grouped", "z [8, 4, 4]"),
    ):
        evaluator = _evaluator(tmp_path, other, monkeypatch)
        with pytest.raises(ArtifactError) as error:
            evaluate_artifact(evaluator.benchmark, evaluator.config, out, trust=trust)
        message = str(error.value)
        assert "\n" not in message
        assert "takes z [16] float32 per sample" in message and f"is fed {fed}" in message


def test_a_scalar_prelu_costs_no_pruning_genes() -> None:
    """SRGAN's ``nn.PReLU()`` has one slope for all channels: its group stays prunable, and
    pruning equals masking; a per-channel PReLU is still excluded, with that reason, and
    so is the conv before a PixelShuffle (with the cause)."""
    from torch import nn

    from gansearch.compress.groups import describe
    from gansearch.compress.masking import ChannelMasker
    from gansearch.compress.prune import predicted_params, prune_channels
    from tests.user_generators import srresnet

    model = srresnet()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    structure = describe(model, x)
    assert [g.name for g in structure.groups] == ["head.0", "body.0"]
    ((name, reason),) = [(g.name, g.reason) for g in structure.excluded_groups]
    assert name == "upsample.0" and reason.endswith(
        "(RuntimeError: pixel_shuffle expects its input's 'channel' dimension to be divisible "
        "by the square of upscale_factor, but input.size(-3)=31 is not divisible by 4): a "
        "PixelShuffle takes its input channels in blocks of upscale_factor**2, but the "
        "dependency trace couples them one by one (not supported)"
    )
    assert all(m.layer not in ("head.1", "body.2") for g in structure.groups for m in g.members)
    masks = {g.name: tuple(i % 2 == 0 for i in range(g.num_channels)) for g in structure.groups}
    pruned = prune_channels(model, structure, masks, x).eval()
    with torch.no_grad(), ChannelMasker(model, structure) as masker:
        masker.set_masks(masks)
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-4, atol=1e-5)
    assert pruned.head[0].out_channels == 4 and pruned.head[1].num_parameters == 1
    assert sum(p.numel() for p in pruned.parameters()) == predicted_params(structure, masks)

    model.head[1] = nn.PReLU(8)
    excluded = {g.name: g.reason for g in describe(model, x).excluded_groups}
    assert excluded["head.0"] == "members of unsupported type: 'head.1' (PReLU)"


@pytest.mark.parametrize("style", ["parametrize", "hooks"])
def test_a_spectral_norm_generator_is_refused_until_it_is_removed(
    tmp_path: Path, monkeypatch, style: str
) -> None:
    """Spectral norm computes `weight`; pruning and encodings act on `weight` itself, so the
    search ran and the export failed (or half the trials failed). The study is refused at
    load, naming the layers and the fix; with the fix applied the groups are prunable."""
    from gansearch.benchmarks import load_benchmark
    from gansearch.candidates import study_space
    from gansearch.config import load_study
    from gansearch.errors import FactoryError

    monkeypatch.syspath_prepend(str(ROOT))
    path = write_study(tmp_path, "dcgan")
    data = yaml.safe_load(path.read_text())
    data["model"]["generator"] = f"{PACKAGE}:spectral_norm_dcgan"
    data["model"]["generator_kwargs"] = {"style": style}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(FactoryError) as error:
        load_benchmark(load_study(path))
    message = str(error.value)
    assert "\n" not in message
    assert "computes the weights of 'fc', 'net.2', 'net.5' from other tensors" in message
    assert "remove_parametrizations(layer, 'weight')" in message

    data["model"]["generator_kwargs"] = {"style": style, "plain": True}
    path.write_text(yaml.safe_dump(data))
    config = load_study(path)
    structure = study_space(load_benchmark(config), config).structure
    assert [g.name for g in structure.groups] == ["net.2"]  # as the plain DCGAN
