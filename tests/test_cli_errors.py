"""Bad input through the real console script: one line on stderr, non-zero exit, no traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    """A user package with good and bad factories."""
    (tmp_path / "userpkg.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def generator():
                layers = [nn.Flatten(), nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4)), nn.Tanh()]
                return nn.Sequential(*layers)

            def data():
                return torch.rand(32, 1, 4, 4) * 2 - 1

            def wrong_data():
                return torch.rand(32, 1, 8, 8)

            def broken():
                raise RuntimeError("out of disk")
            """
        )
    )
    return tmp_path


def _study(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nevaluation: {num_samples: 16, seeds: [0], latency: {runs: 3, warmup: 0}}\n" + body
    )
    return path


def test_unknown_key(run_cli, tmp_path: Path) -> None:
    study = _study(tmp_path, "benchmark: digits\nobjectivs: [fid]\n")
    _assert_one_line_error(run_cli("evaluate", str(study)), "unknown key `objectivs`")


def test_wrong_type(run_cli, tmp_path: Path) -> None:
    study = _study(tmp_path, "benchmark: digits\nseed: abc\n")
    _assert_one_line_error(run_cli("evaluate", str(study)), "`seed`")


def test_malformed_yaml(run_cli, tmp_path: Path) -> None:
    study = tmp_path / "bad.yaml"
    study.write_text("name: t\nbenchmark: {digits\n")
    _assert_one_line_error(run_cli("evaluate", str(study)), "malformed YAML")


def test_missing_checkpoint(run_cli, tmp_path: Path) -> None:
    study = _study(tmp_path, f"benchmark: digits\nweights: {tmp_path / 'nowhere'}\n")
    _assert_one_line_error(
        run_cli("evaluate", str(study)), "checkpoint not found", "gansearch zoo train"
    )


def test_factory_that_cannot_be_imported(run_cli, tmp_path: Path) -> None:
    study = _study(
        tmp_path,
        "objectives: [stored_bytes]\n"
        "model: {generator: 'no_such_pkg.models:gen', data: 'x:y', latent_shape: [4]}\n",
    )
    _assert_one_line_error(
        run_cli("evaluate", str(study)), "cannot import module 'no_such_pkg.models'"
    )


def test_factory_that_fails(run_cli, tmp_path: Path, factories: Path) -> None:
    study = _study(
        tmp_path,
        "objectives: [stored_bytes]\n"
        "model: {generator: 'userpkg:broken', data: 'userpkg:data', latent_shape: [4]}\n",
    )
    result = run_cli("evaluate", str(study), env={"PYTHONPATH": str(factories)})
    _assert_one_line_error(result, "generator factory 'userpkg:broken' failed", "out of disk")


def test_shape_mismatch(run_cli, tmp_path: Path, factories: Path) -> None:
    study = _study(
        tmp_path,
        "objectives: [stored_bytes]\n"
        "model: {generator: 'userpkg:generator', data: 'userpkg:wrong_data', latent_shape: [4]}\n",
    )
    result = run_cli("evaluate", str(study), env={"PYTHONPATH": str(factories)})
    _assert_one_line_error(result, "shape mismatch")


def test_custom_model_without_features_gives_cost_and_no_fid(
    run_cli, tmp_path: Path, factories: Path
) -> None:
    import json

    study = _study(
        tmp_path,
        "objectives: [stored_bytes, macs]\n"
        "model: {generator: 'userpkg:generator', data: 'userpkg:data', latent_shape: [4]}\n",
    )
    result = run_cli("evaluate", str(study), "--json", env={"PYTHONPATH": str(factories)})
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert "fid" not in metrics
    assert metrics["params"]["value"] == 4 * 16 + 16
    assert metrics["macs"]["value"] == 4 * 16


def test_objective_without_feature_network(run_cli, tmp_path: Path, factories: Path) -> None:
    study = _study(
        tmp_path,
        "objectives: [fid, macs]\n"
        "model: {generator: 'userpkg:generator', data: 'userpkg:data', latent_shape: [4]}\n",
    )
    result = run_cli("evaluate", str(study), env={"PYTHONPATH": str(factories)})
    _assert_one_line_error(result, "objective 'fid' needs a feature network")


@pytest.mark.parametrize(
    ("option", "needles"),
    [
        (("--strategy", "nope"), ("unknown strategy 'nope'", "optuna", "deap", "hybrid")),
        (("--engine", "nope"), ("unknown engine 'nope'", "local", "ray")),
        (("--trials", "0"), ("`--trials` must be at least 1, got 0",)),
        (("--seed", "-1"), ("`--seed` must be in [0, 2**32), got -1",)),
        (("--workers", "2"), ("`--workers` and `--address` need `--engine ray`",)),
    ],
)
def test_bad_run_options(run_cli, tmp_path: Path, option: tuple[str, ...], needles) -> None:
    study = _study(tmp_path, "benchmark: digits\n")
    _assert_one_line_error(run_cli("run", str(study), *option), *needles)


def test_bad_supernet_steps(run_cli, tmp_path: Path) -> None:
    study = _study(tmp_path, "benchmark: digits\n")
    result = run_cli("supernet", "train", str(study), "--steps", "0")
    _assert_one_line_error(result, "`--steps` must be at least 1, got 0")


def test_help_lists_commands(run_cli) -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("evaluate", "run", "studies", "pareto", "export", "dashboard", "zoo"):
        assert command in result.stdout
    for command in ("bench", "supernet"):
        assert command in result.stdout
    bench = run_cli("bench", "--help")
    for command in (
        "evaluate",
        "transforms",
        "supernet",
        "search",
        "engines",
        "fidelity",
        "distill",
        "headline",
    ):
        assert command in bench.stdout


def test_cli_import_is_lazy() -> None:
    """`gansearch --help` must not pay for torch: the CLI module imports no heavy library."""
    import subprocess
    import sys

    heavy = "('torch', 'optuna', 'ray')"
    code = f"import sys, gansearch.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
