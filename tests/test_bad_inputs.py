"""Fuzz-style table: every malformed study gives one line, exit 2 and no traceback.

Each row mutates one valid base study (a tiny custom model: 80-parameter generator,
toy data, toy feature network) and runs the CLI in-process, the way a user runs
``gansearch evaluate STUDY`` or ``gansearch run STUDY --trials 1``. It asserts exit code 2,
exactly one line on stderr beginning ``gansearch: error:`` that contains the expected
words, nothing on stdout (so no FID or KID number is ever printed for a silently wrong
input), and no traceback. Rows that the study file alone refutes must not call a single
factory (nothing is loaded).
"""

from __future__ import annotations

import copy
import errno
import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gansearch.cli import app

FACTORIES = "badinputs_factories"

FACTORY_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    CALLS = []


    class Features(nn.Module):
        def __init__(self, nan=False, single=False):
            super().__init__()
            self.embed = nn.Linear(16, 8)
            self.classify = nn.Linear(8, 3)
            self.nan, self.single = nan, single

        def forward(self, images):
            features = torch.tanh(self.embed(images.flatten(1)))
            if self.nan:
                features = features * float("nan")
            return features if self.single else (features, self.classify(features))


    def _images(n):
        return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1


    def generator():
        CALLS.append("generator")
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4)), nn.Tanh())


    def nan_weights():
        model = generator()
        with torch.no_grad():
            model[1].bias.fill_(float("nan"))
        return model


    class Exploding(nn.Module):
        def forward(self, z):
            return (z.flatten(1).repeat(1, 4) * 0.0).log().reshape(-1, 1, 4, 4)


    def exploding():
        return Exploding()


    def broken():
        raise RuntimeError("out of disk")


    def not_a_module():
        return 3


    def features():
        return Features()


    def nan_features():
        return Features(nan=True)


    def single_output_features():
        return Features(single=True)


    def data():
        CALLS.append("data")
        return _images(64)


    def data_nan():
        images = _images(64)
        images[3, 0, 1, 1] = float("nan")
        return images


    def data_inf():
        images = _images(64)
        images[0, 0, 0, 0] = float("inf")
        return images


    def data_uint8():
        return ((_images(64) + 1) * 127.5).to(torch.uint8)


    def data_0_255():
        return (_images(64) + 1) * 127.5


    def data_one():
        return _images(1)


    def data_four():
        return _images(4)


    def data_list():
        return [[0.0]]


    def data_wrong_shape():
        return torch.zeros(64, 1, 8, 8)


    def image_generator():
        return nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Tanh())


    def pairs():
        return _images(64), _images(64).flip(-1)


    def pairs_uneven():
        return _images(64), _images(32)


    def inputs_broken(n, seed):
        raise ValueError("no such file: latents.npy")


    def inputs_wrong_count(n, seed):
        return torch.zeros(n + 1, 4)


    def inputs_nan(n, seed):
        return torch.full((n, 4), float("nan"))


    def inputs_dict(n, seed):
        return {"latents": torch.zeros(n, 4)}


    def inputs_ok(n, seed):
        return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
    """
)


@pytest.fixture(scope="module")
def factories(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The user's factory module (importable, as with PYTHONPATH) and checkpoints beside it."""
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("factories")
    (root / f"{FACTORIES}.py").write_text(FACTORY_SOURCE)
    sys.path.insert(0, str(root))
    module = importlib.import_module(FACTORIES)
    state = {k: v.contiguous() for k, v in module.generator().state_dict().items()}
    save_file(state, str(root / "good.safetensors"))
    save_file(
        {**state, "1.bias": torch.full_like(state["1.bias"], float("nan"))},
        str(root / "nan.safetensors"),
    )
    save_file({**state, "1.weight": torch.zeros(3, 3)}, str(root / "shape.safetensors"))
    (root / "garbage.safetensors").write_bytes(b"not a safetensors file")
    module.ROOT = root
    yield module
    sys.path.remove(str(root))
    sys.modules.pop(FACTORIES, None)


BASE: dict[str, Any] = {
    "name": "bad",
    "objectives": ["fid", "stored_bytes"],
    "evaluation": {
        "num_samples": 16,
        "seeds": [0],
        "batch_size": 16,
        "kid_subsets": 2,
        "kid_subset_size": 8,
        "latency": {"runs": 3, "warmup": 0},
    },
    "model": {
        "generator": f"{FACTORIES}:generator",
        "data": f"{FACTORIES}:data",
        "features": f"{FACTORIES}:features",
        "latent_shape": [4],
    },
    "space": {"ofa": False},
}

Mutation = Callable[[dict[str, Any], dict[str, Path]], "dict[str, Any] | str | bytes"]


def put(key: str, value: Any) -> Mutation:
    """Set ``a.b.c`` (creating sections); ``{dir}``/``{root}`` in strings are paths."""

    def mutate(study: dict[str, Any], paths: dict[str, Path]) -> dict[str, Any]:
        *parents, last = key.split(".")
        node = study
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value.format(**paths) if isinstance(value, str) else value
        return study

    return mutate


def drop(key: str) -> Mutation:
    def mutate(study: dict[str, Any], paths: dict[str, Path]) -> dict[str, Any]:
        *parents, last = key.split(".")
        node = study
        for part in parents:
            node = node[part]
        del node[last]
        return study

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(study: dict[str, Any], paths: dict[str, Path]) -> Any:
        for mutation in mutations:
            study = mutation(study, paths)
        return study

    return mutate


def raw(content: str | bytes) -> Mutation:
    return lambda study, paths: content


def factory(role: str, function: str) -> Mutation:
    return put(f"model.{role}", f"{FACTORIES}:{function}")


def constraint(text: str) -> Mutation:
    return put("search.constraints", [text])


# (id, mutation, command, expected words; "config" rows must call no factory)
CONFIG_ROWS = [
    ("malformed-yaml", raw("name: bad\nbenchmark: {digits\n"), "malformed YAML"),
    ("tab-indented-yaml", raw("name: bad\n\tbenchmark: digits\n"), "malformed YAML"),
    ("yaml-list", raw("- a\n- b\n"), "must be a YAML mapping"),
    ("yaml-scalar", raw("just some words\n"), "must be a YAML mapping"),
    ("not-utf8", raw(b"name: bad\xff\xfe\nbenchmark: digits\n"), "not UTF-8"),
    ("utf16", raw("name: bad\nbenchmark: digits\n".encode("utf-16")), "not UTF-8"),
    ("empty-file", raw(""), "is empty"),
    ("only-comments", raw("# nothing here\n"), "is empty"),
    ("missing-name", drop("name"), "missing required key `name`"),
    ("bad-name", put("name", "../escape"), "`name`: must start with a letter or digit"),
    ("benchmark-and-model", put("benchmark", "digits"), "exactly one of `benchmark`"),
    ("no-model", drop("model"), "exactly one of `benchmark`"),
    ("unknown-top-key", put("objectivs", ["fid"]), "unknown key `objectivs`"),
    ("unknown-evaluation-key", put("evaluation.num_sampels", 3), "`evaluation.num_sampels`"),
    ("unknown-latency-key", put("evaluation.latency.rnus", 3), "`evaluation.latency.rnus`"),
    (
        "unknown-inception-key",
        put("evaluation.inception", {"weights": "w.pt", "wieghts": "x"}),
        "unknown key `evaluation.inception.wieghts`",
    ),
    ("unknown-model-key", put("model.genrator", "a:b"), "unknown key `model.genrator`"),
    ("unknown-search-key", put("search.trails", 3), "unknown key `search.trails`"),
    ("unknown-resources-key", put("search.resources.cpu", 1), "`search.resources.cpu`"),
    ("unknown-space-key", put("space.prunee", {}), "unknown key `space.prunee`"),
    ("unknown-distill-key", put("distill.stpes", 3), "unknown key `distill.stpes`"),
    ("unknown-loss-key", put("distill.losses.pixle", 1), "`distill.losses.pixle`"),
    ("unknown-supernet-key", put("supernet.step", 3), "unknown key `supernet.step`"),
    ("evaluation-is-list", put("evaluation", [1, 2]), "`evaluation`"),
    ("model-is-string", put("model", "userpkg:generator"), "`model`"),
    ("search-is-number", put("search", 3), "`search`"),
    ("space-is-string", put("space", "all"), "`space`"),
    ("distill-is-list", put("distill", []), "`distill`"),
    ("supernet-is-string", put("supernet", "yes"), "`supernet`"),
    ("objectives-is-string", put("objectives", "fid"), "`objectives`"),
    ("seed-is-text", put("seed", "abc"), "`seed`"),
    ("num-samples-is-text", put("evaluation.num_samples", "many"), "`evaluation.num_samples`"),
    ("latent-shape-is-text", put("model.latent_shape", "four"), "`model.latent_shape`"),
    ("latent-shape-empty", put("model.latent_shape", []), "one or more sizes >= 1"),
    ("latent-shape-negative", put("model.latent_shape", [-4]), "one or more sizes >= 1"),
    ("num-samples-zero", put("evaluation.num_samples", 0), "`evaluation.num_samples`"),
    ("num-samples-negative", put("evaluation.num_samples", -5), "`evaluation.num_samples`"),
    ("num-samples-huge", put("evaluation.num_samples", 10**30), "`evaluation.num_samples`"),
    ("batch-size-zero", put("evaluation.batch_size", 0), "`evaluation.batch_size`"),
    ("kid-subsets-zero", put("evaluation.kid_subsets", 0), "`evaluation.kid_subsets`"),
    ("kid-subsets-huge", put("evaluation.kid_subsets", 10**12), "`evaluation.kid_subsets`"),
    ("kid-subset-size-one", put("evaluation.kid_subset_size", 1), "kid_subset_size"),
    (
        "kid-subset-size-above-samples",
        put("evaluation.kid_subset_size", 32),
        "kid_subset_size <= num_samples",
    ),
    ("latency-runs-one", put("evaluation.latency.runs", 1), "`evaluation.latency.runs`"),
    ("trials-zero", put("search.trials", 0), "`search.trials`"),
    ("population-two", put("search.population", 2), "`search.population`"),
    ("mutation-prob-above-one", put("search.mutation_prob", 1.5), "`search.mutation_prob`"),
    ("timeout-negative", put("search.timeout", -1), "`search.timeout`"),
    ("distill-lr-nan", put("distill.lr", float("nan")), "`distill.lr`"),
    ("distill-lr-inf", put("distill.lr", float("inf")), "`distill.lr`"),
    ("supernet-ratio-zero", put("supernet.ratios", [0, 1]), "every ratio must be in (0, 1]"),
    ("supernet-bits-one", put("supernet.bits", [1, 4]), "quantisation-aware bits must be 2..8"),
    ("export-steps-negative", put("export.finetune_steps", -5), "`export.finetune_steps`"),
    ("unknown-export-key", put("export.steps", 10), "unknown key `export.steps`"),
    ("seed-negative", put("seed", -1), "a seed must be an integer in [0, 2**32)"),
    ("seed-2-to-32", put("seed", 2**32), "a seed must be an integer in [0, 2**32)"),
    ("seed-huge-float", put("seed", 1e30), "`seed`"),
    ("seed-fraction", put("seed", 1.5), "`seed`"),
    ("evaluation-seed-negative", put("evaluation.seeds", [-1]), "`evaluation.seeds.0`"),
    ("evaluation-seed-huge", put("evaluation.seeds", [0, 2**64]), "`evaluation.seeds.1`"),
    ("evaluation-seeds-empty", put("evaluation.seeds", []), "needs at least one seed"),
    ("evaluation-seeds-repeat", put("evaluation.seeds", [1, 1]), "no repeats"),
    ("distill-seed-negative", put("distill.seed", -3), "`distill.seed`"),
    ("supernet-seed-huge", put("supernet.seed", 2**40), "`supernet.seed`"),
    ("device-banana", put("device", "banana"), "must be a torch device"),
    ("device-bad-index", put("device", "cuda:x"), "must be a torch device"),
    ("device-empty", put("device", ""), "must be a torch device"),
    ("objectives-empty", put("objectives", []), "needs at least one metric"),
    ("objectives-repeat", put("objectives", ["fid", "fid"]), "objectives repeat a metric"),
    ("objectives-unknown", put("objectives", ["speed"]), "unknown metric 'speed'"),
    ("objective-never-measured", put("objectives", ["psnr"]), "needs paired ground truth"),
    ("inputs-unknown-kind", put("model.inputs", "images"), "must be one of latents"),
    (
        "inputs-conditional-without-classes",
        put("model.inputs", "conditional"),
        "`model.num_classes` goes with `inputs: conditional`",
    ),
    ("num-classes-without-conditional", put("model.num_classes", 10), "remove it"),
    ("num-classes-one", put("model.num_classes", 1), "greater than or equal to 2"),
    (
        "latent-shape-with-paired",
        put("model.inputs", "paired"),
        "`model.latent_shape` is only used with",
    ),
    (
        "latents-without-shape",
        drop("model.latent_shape"),
        "`model.inputs: latents` needs `model.latent_shape`",
    ),
    (
        "features-checkpoint-without-features",
        both(
            drop("model.features"),
            put("model.features_checkpoint", "x.safetensors"),
            put("objectives", ["stored_bytes"]),
        ),
        "`model.features_checkpoint` needs `model.features`",
    ),
    ("constraint-psnr-drop-unpaired", constraint("psnr >= teacher - 0.5"), "never measures"),
    ("objective-needs-inception", put("objectives", ["fid_inception"]), "local Inception weights"),
    ("objective-needs-features", drop("model.features"), "needs a feature network"),
    ("constraint-syntax", constraint("fid < 2"), "cannot read constraint"),
    ("constraint-not-a-number", constraint("fid <= two"), "cannot read constraint"),
    ("constraint-lowercase-unit", constraint("stored_bytes <= 64 kb"), "units: B, K, M, G"),
    ("constraint-two-dots", constraint("fid <= 1.2.3"), "cannot read the number"),
    ("constraint-inf", constraint("stored_bytes <= 1e999"), "not a finite number"),
    ("constraint-inf-factor", constraint("fid <= 1e999 * teacher"), "not a finite number"),
    ("constraint-nan", constraint("fid <= nan"), "cannot read constraint"),
    ("constraint-unknown-metric", constraint("speed <= 3"), "unknown metric 'speed'"),
    ("constraint-unmeasured", constraint("psnr >= 20"), "never measures"),
    ("constraint-no-inception", constraint("fid_inception <= 3"), "never measures"),
    ("constraints-is-string", put("search.constraints", "fid <= 2"), "`search.constraints`"),
    ("strategy-unknown", put("search.strategy", "nope"), "`strategy` must be one of"),
    ("engine-unknown", put("search.engine", "nope"), "`engine` must be one of"),
    ("sampler-unknown", put("search.sampler", "nope"), "`sampler` must be one of"),
    ("factory-path-no-colon", put("model.generator", "nocolon"), "package.module:function"),
]

MODEL_ROWS = [
    (
        "factory-module-missing",
        put("model.generator", "no_such_module:gen"),
        "cannot import module",
    ),
    ("factory-function-missing", factory("generator", "nope"), "has no callable 'nope'"),
    ("factory-raises", factory("generator", "broken"), "out of disk"),
    ("factory-not-a-module", factory("generator", "not_a_module"), "not a torch.nn.Module"),
    (
        "checkpoint-missing",
        put("model.generator_checkpoint", "{root}/none.safetensors"),
        "checkpoint not found",
    ),
    (
        "checkpoint-nan",
        put("model.generator_checkpoint", "{root}/nan.safetensors"),
        "holds NaN or inf",
    ),
    (
        "checkpoint-wrong-shape",
        put("model.generator_checkpoint", "{root}/shape.safetensors"),
        "has shape",
    ),
    (
        "checkpoint-garbage",
        put("model.generator_checkpoint", "{root}/garbage.safetensors"),
        "cannot read checkpoint",
    ),
    ("weights-nan", factory("generator", "nan_weights"), "has NaN or inf in `1.bias`"),
    ("outputs-inf", factory("generator", "exploding"), "makes NaN or inf images"),
    ("latent-shape-wrong", put("model.latent_shape", [7]), "fix `model.latent_shape`"),
    ("data-nan", factory("data", "data_nan"), "returned NaN or inf"),
    ("data-inf", factory("data", "data_inf"), "returned NaN or inf"),
    ("data-uint8", factory("data", "data_uint8"), "x.float() / 127.5 - 1"),
    ("data-0-255", factory("data", "data_0_255"), "outside the generator's range [-1, 1]"),
    ("data-single-image", factory("data", "data_one"), "has 1 image(s)"),
    ("data-fewer-than-kid-subset", factory("data", "data_four"), "lower kid_subset_size"),
    ("data-not-a-tensor", factory("data", "data_list"), "must return a tensor of images"),
    ("data-wrong-shape", factory("data", "data_wrong_shape"), "shape mismatch"),
    ("features-nan", factory("features", "nan_features"), "returns NaN or inf"),
    (
        "features-checkpoint-missing",
        put("model.features_checkpoint", "{root}/none.safetensors"),
        "fix `model.features_checkpoint`",
    ),
    (
        "reference-without-split-argument",
        put("evaluation.reference", "test"),
        "to take a `split` argument",
    ),
    (
        "paired-data-not-a-pair",
        both(
            drop("model.latent_shape"),
            put("model.inputs", "paired"),
            factory("generator", "image_generator"),
        ),
        "must return (inputs, targets)",
    ),
    (
        "paired-data-uneven",
        both(
            drop("model.latent_shape"),
            put("model.inputs", "paired"),
            factory("generator", "image_generator"),
            factory("data", "pairs_uneven"),
        ),
        "paired data needs one target per input",
    ),
    (
        "inputs-function-fails",
        both(drop("model.latent_shape"), put("model.inputs", f"{FACTORIES}:inputs_broken")),
        "no such file: latents.npy",
    ),
    (
        "inputs-function-wrong-count",
        both(drop("model.latent_shape"), put("model.inputs", f"{FACTORIES}:inputs_wrong_count")),
        "must return 2 samples for n=2",
    ),
    (
        "inputs-function-nan",
        both(drop("model.latent_shape"), put("model.inputs", f"{FACTORIES}:inputs_nan")),
        "returned NaN or inf values",
    ),
    (
        "inputs-function-dict-keys",
        both(drop("model.latent_shape"), put("model.inputs", f"{FACTORIES}:inputs_dict")),
        "return {'inputs': ..., 'targets': ...}",
    ),
    (
        "psnr-from-inputs-function-without-targets",
        both(
            drop("model.latent_shape"),
            put("model.inputs", f"{FACTORIES}:inputs_ok"),
            put("objectives", ["psnr", "stored_bytes"]),
        ),
        "returns no targets",
    ),
    ("features-one-output", factory("features", "single_output_features"), "(features, logits)"),
    ("device-without-hardware", put("device", "cuda:999"), "set `device: cpu`"),
    (
        "cache-dir-read-only",
        put("evaluation.cache_dir", "{read_only}/cache"),
        "reference-feature cache",
    ),
    (
        "cache-dir-is-a-file",
        put("evaluation.cache_dir", "{root}/good.safetensors"),
        "evaluation.cache_dir",
    ),
]

RUN_ROWS = [
    (
        "run-device-without-hardware",
        both(put("output_dir", "{tmp}/out"), put("device", "cuda:999")),
        "set `device: cpu`",
    ),
    (
        "run-data-0-255",
        both(put("output_dir", "{tmp}/out"), factory("data", "data_0_255")),
        "x.float() / 127.5 - 1",
    ),
    (
        "run-nan-checkpoint",
        both(
            put("output_dir", "{tmp}/out"),
            put("model.generator_checkpoint", "{root}/nan.safetensors"),
        ),
        "holds NaN or inf",
    ),
    ("output-dir-read-only", put("output_dir", "{read_only}/out"), "`output_dir:`"),
    ("working-dir-read-only", put("name", "cwd"), "studies/cwd"),
    ("run-constraint-inf", constraint("stored_bytes <= 1e999"), "not a finite number"),
    ("run-constraint-unmeasured", constraint("ssim >= 0.5"), "never measures"),
    ("run-seed-negative", put("seed", -7), "a seed must be an integer"),
    (
        "run-kid-subset-size",
        put("evaluation.kid_subset_size", 17),
        "kid_subset_size <= num_samples",
    ),
]


def _row_params(rows: list[tuple[str, Mutation, str]]) -> list[Any]:
    return [pytest.param(mutation, expected, id=name) for name, mutation, expected in rows]


@pytest.fixture
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder in which creating anything fails with EROFS, as on a read-only mount.

    Simulated at the ``os`` level because permission bits do not stop root (CI containers).
    """
    root = tmp_path / "read-only"
    root.mkdir()
    real_mkdir, real_open = os.mkdir, os.open

    def refused(path: Any) -> bool:
        return Path(os.path.abspath(os.fspath(path))).is_relative_to(root)

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if refused(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        real_mkdir(path, mode, dir_fd=dir_fd)

    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if refused(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    return root


def _write_study(tmp_path: Path, mutation: Mutation, paths: dict[str, Path]) -> Path:
    content = mutation(copy.deepcopy(BASE), paths)
    path = tmp_path / "study.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(yaml.safe_dump(content))
    return path


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _assert_one_line(result: Any, expected: str) -> None:
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything, everything
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 2, everything
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gansearch: error: "), lines[0]
    assert expected in lines[0], lines[0]
    # Nothing on stdout: no table, hence no FID or KID number for a silently wrong input.
    assert result.stdout == "", result.stdout


@pytest.mark.parametrize(("mutation", "expected"), _row_params(CONFIG_ROWS))
def test_bad_study_file(factories: Any, tmp_path: Path, mutation: Mutation, expected: str) -> None:
    before = list(factories.CALLS)
    study = _write_study(tmp_path, mutation, {"root": factories.ROOT})
    _assert_one_line(_invoke("evaluate", str(study)), expected)
    assert before == factories.CALLS, "a study the file alone refutes must load nothing"


@pytest.mark.parametrize(("mutation", "expected"), _row_params(MODEL_ROWS))
def test_bad_model_or_data(
    factories: Any, tmp_path: Path, read_only: Path, mutation: Mutation, expected: str
) -> None:
    study = _write_study(tmp_path, mutation, {"root": factories.ROOT, "read_only": read_only})
    _assert_one_line(_invoke("evaluate", str(study)), expected)


@pytest.mark.parametrize(("mutation", "expected"), _row_params(RUN_ROWS))
def test_bad_run(
    factories: Any,
    tmp_path: Path,
    read_only: Path,
    monkeypatch: pytest.MonkeyPatch,
    mutation: Mutation,
    expected: str,
) -> None:
    paths = {"root": factories.ROOT, "read_only": read_only, "tmp": tmp_path}
    study = _write_study(tmp_path, mutation, paths)
    monkeypatch.chdir(read_only)  # a read-only working directory: studies/<name>/ is refused
    _assert_one_line(_invoke("run", str(study), "--trials", "1"), expected)


def test_table_is_large_enough() -> None:
    rows = CONFIG_ROWS + MODEL_ROWS + RUN_ROWS
    assert len(rows) >= 60
    assert len({name for name, _, _ in rows}) == len(rows)


def test_base_study_is_valid(factories: Any, tmp_path: Path) -> None:
    """The rows fail because of their mutation: the unmutated study scores the teacher."""
    study = _write_study(tmp_path, lambda study, paths: study, {})
    result = _invoke("evaluate", str(study), "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert '"fid"' in result.stdout and '"kid"' in result.stdout
