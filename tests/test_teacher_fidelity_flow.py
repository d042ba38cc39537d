"""Teacher-fidelity objectives end to end: the teacher is the ideal, never a failure.

``teacher_psnr`` / ``teacher_l1`` / ``teacher_mse`` compare a candidate with the teacher
itself, so the teacher scores 100 dB (the PSNR ceiling), 0 and 0. Known-answer tests
check the ceiling, the refusal of teacher-relative bounds and the absolute scales of
:mod:`gansearch.pareto`; the CLI tests run ``evaluate`` -> ``run`` -> ``pareto`` (with
hypervolume and plots) -> ``export --pick knee`` on a user's generator without a
feature network, which also holds a non-persistent buffer (one stored-bytes rule).
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from gansearch.config import load_study
from gansearch.errors import ConfigError, GansearchError
from gansearch.evaluators.fidelity import psnr, teacher_fidelity
from gansearch.evaluators.objectives import PSNR_CEILING_DB, Constraint
from gansearch.pareto import (
    FIDELITY_REFERENCES,
    FIDELITY_SCALES,
    FrontPoint,
    hypervolume,
    knee,
    reference_point,
    relative_losses,
    scale,
)

# --------------------------------------------------------------------------- the metric


def test_psnr_is_capped_at_100_db() -> None:
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    assert PSNR_CEILING_DB == 100.0
    assert psnr(x, x, data_range=2.0) == 100.0
    # MSE 1e-14 would be 146 dB: above the ceiling reads as the ceiling
    assert psnr(x, x + 1e-7, data_range=2.0) == 100.0
    # below the ceiling the value is untouched: MSE 1e-6 -> 10 log10(4 / 1e-6) = 66.02 dB
    assert psnr(x, x + 1e-3, data_range=2.0) == pytest.approx(10 * math.log10(4e6), rel=1e-9)


def test_the_teachers_own_fidelity_is_finite() -> None:
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    assert teacher_fidelity(images, images) == {
        "teacher_l1": 0.0,
        "teacher_mse": 0.0,
        "teacher_psnr": 100.0,
    }


# --------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("name", ["teacher_psnr", "teacher_l1", "teacher_mse"])
def test_a_bound_relative_to_the_teacher_is_refused(name: str) -> None:
    op = ">=" if name == "teacher_psnr" else "<="
    with pytest.raises(ValueError, match="absolute bound") as error:
        Constraint.parse(f"{name} {op} 0.9 * teacher")
    assert "\n" not in str(error.value) and name in str(error.value)


def test_an_absolute_fidelity_bound_works_without_teacher_values() -> None:
    at_least_30 = Constraint.parse("teacher_psnr >= 30")
    assert at_least_30.violation({"teacher_psnr": 100.0}, {}) <= 0  # the teacher itself
    assert at_least_30.violation({"teacher_psnr": 31.0}, {}) <= 0
    assert at_least_30.violation({"teacher_psnr": 25.0}, {}) > 0
    small_error = Constraint.parse("teacher_l1 <= 0.05")
    assert small_error.violation({"teacher_l1": 0.0}, {}) <= 0
    assert small_error.violation({"teacher_l1": 0.06}, {}) > 0


def test_the_study_file_refuses_a_relative_fidelity_constraint(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nobjectives: [teacher_psnr, stored_bytes]\n"
        "model: {generator: 'pkg:generator', data: 'pkg:data', latent_shape: [4]}\n"
        "search: {constraints: ['teacher_psnr >= 0.9 * teacher']}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_study(path)
    message = str(error.value)
    assert "\n" not in message and "teacher_psnr >= 30" in message


# --------------------------------------------------------------------------- normalised space


def test_fidelity_objectives_use_absolute_scales() -> None:
    # the teacher's 0.0 / None / 100 dB are never divided by
    teacher = {"teacher_l1": 0.0, "teacher_mse": 0.0, "teacher_psnr": None, "macs": 100.0}
    objectives = ["teacher_l1", "teacher_mse", "teacher_psnr", "macs"]
    relative = relative_losses([0.1, 0.04, 30.0, 50.0], objectives, teacher)
    np.testing.assert_allclose(relative, [0.05, 0.01, -0.3, 0.5])
    np.testing.assert_allclose(reference_point(objectives), [0.1, 0.01, -0.2, 1.1])
    # the three references are the same error: 10% of the range [-1, 1], i.e. 20 dB
    mse = FIDELITY_REFERENCES["teacher_mse"] * FIDELITY_SCALES["teacher_mse"]
    assert 10 * math.log10(2.0**2 / mse) == pytest.approx(20.0)
    assert FIDELITY_REFERENCES["teacher_psnr"] * FIDELITY_SCALES["teacher_psnr"] == 20.0


def test_hypervolume_with_teacher_psnr() -> None:
    # Losses (-1.0, 1.0) [the teacher] and (-0.3, 0.25) against (-0.2, 1.1):
    # 0.8 x 0.1 + 0.1 x 0.85 - 0.1 x 0.1 = 0.155. A point under 20 dB adds nothing.
    objectives = ["teacher_psnr", "stored_bytes"]
    points = [(100.0, 1000.0), (30.0, 250.0)]
    for teacher_psnr in (100.0, None):
        teacher = {"teacher_psnr": teacher_psnr, "stored_bytes": 1000.0}
        assert hypervolume(points, objectives, teacher) == pytest.approx(0.155)
        assert hypervolume([*points, (15.0, 10.0)], objectives, teacher) == pytest.approx(0.155)


def test_hypervolume_with_teacher_l1() -> None:
    # Losses (0, 1.0) and (0.05, 0.5) against (0.1, 1.1): 0.01 + 0.03 - 0.005 = 0.035.
    teacher = {"teacher_l1": 0.0, "macs": 100.0}
    value = hypervolume([(0.0, 100.0), (0.1, 50.0)], ["teacher_l1", "macs"], teacher)
    assert value == pytest.approx(0.035)


def test_knee_of_a_fidelity_front() -> None:
    # Scaled (min-max) losses: teacher (0, 1), middle (0.25, 0.2), smallest (1, 0).
    front = [
        FrontPoint(0, (100.0, 1000.0), {}, {}, "{}"),
        FrontPoint(1, (80.0, 280.0), {}, {}, "{}"),
        FrontPoint(2, (20.0, 100.0), {}, {}, "{}"),
    ]
    teacher = {"teacher_psnr": 100.0, "stored_bytes": 1000.0}
    assert knee(front, ["teacher_psnr", "stored_bytes"], teacher).number == 1


def test_a_teacher_relative_objective_needs_a_usable_teacher_value() -> None:
    assert scale("teacher_psnr", {}) == 100.0
    for value in (None, 0.0, math.inf):
        with pytest.raises(GansearchError, match="'fid'"):
            scale("fid", {"fid": value})


# --------------------------------------------------------------------------- through the CLI

USER_PACKAGE = """
import torch
from torch import nn


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.project = nn.Linear(4, 8 * 4 * 4)
        self.conv = nn.Conv2d(8, 8, 3, 1, 1)
        self.norm = nn.BatchNorm2d(8)
        self.out = nn.Conv2d(8, 1, 3, 1, 1)
        # a table the constructor computes (not stored) and a persistent gain (stored)
        self.register_buffer("table", torch.linspace(0, 1, 64 * 64).view(64, 64), False)
        self.register_buffer("gain", torch.full((1, 1, 4, 4), 0.9))

    def forward(self, z):
        h = torch.relu(self.project(z)).view(z.shape[0], 8, 4, 4)
        h = torch.relu(self.norm(self.conv(h)))
        return torch.tanh(self.out(h) * self.gain + 0.1 * self.table[::16, ::16])


def generator():
    torch.manual_seed(0)
    return Generator().eval()


def data():
    return torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
"""
# project 4*128 + 128, conv 8*8*9 + 8, norm 4*8, out 8*9 + 1, gain 16 float32 elements;
# the 64 x 64 table is not stored.
TEACHER_BYTES = 4 * ((4 * 128 + 128) + (8 * 8 * 9 + 8) + 4 * 8 + (8 * 9 + 1) + 16)


def _write_study(tmp_path: Path, name: str, objectives: str, constraint: str) -> Path:
    (tmp_path / "fidelitypkg.py").write_text(textwrap.dedent(USER_PACKAGE))
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\noutput_dir: {tmp_path / name}\nobjectives: {objectives}\n"
        "model: {generator: 'fidelitypkg:generator', data: 'fidelitypkg:data', "
        "latent_shape: [4]}\n"
        "evaluation: {num_samples: 16, seeds: [0, 1], latency: {runs: 3, warmup: 0}}\n"
        "space: {bits: [4, 8, 32], codebook: [0], lowrank: {ratios: [0]}, ofa: off}\n"
        f"search: {{strategy: optuna, trials: 6, population: 4, constraints: ['{constraint}']}}\n"
    )
    return path


def _trials(tmp_path: Path, name: str) -> tuple[dict, list]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'study.db'}")
    return study.user_attrs, study.get_trials()


def _ok(result) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.slow
def test_teacher_psnr_study_runs_pareto_and_exports_the_knee(run_cli, tmp_path: Path) -> None:
    study = _write_study(
        tmp_path, "psnr", "[teacher_psnr, stored_bytes, macs]", "teacher_psnr >= 20"
    )
    env = {"PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}

    evaluated = run_cli("evaluate", str(study), "--json", env=env)
    _ok(evaluated)
    assert json.loads(evaluated.stdout)["metrics"]["stored_bytes"]["value"] == TEACHER_BYTES

    _ok(run_cli("run", str(study), env=env, timeout=300))
    attrs, trials = _trials(tmp_path, "psnr")
    teacher_trial = next(t for t in trials if t.user_attrs.get("reference") == "teacher")
    assert teacher_trial.state.name == "COMPLETE", teacher_trial.user_attrs.get("fail_reason")
    assert teacher_trial.values[0] == 100.0
    # the search counts what `evaluate` counts: the table is not stored, the gain is
    assert attrs["teacher_metrics"]["stored_bytes"] == TEACHER_BYTES
    assert attrs["teacher_metrics"]["teacher_psnr"] == 100.0

    pareto = run_cli("pareto", str(study), "--json", "--plot", str(tmp_path / "front"), env=env)
    _ok(pareto)
    report = json.loads(pareto.stdout)
    assert report["front"] and teacher_trial.number in {row["trial"] for row in report["front"]}
    assert all(math.isfinite(v) for row in report["front"] for v in row["objectives"].values())
    assert math.isfinite(report["hypervolume"]) and report["hypervolume"] > 0
    assert (tmp_path / "front.png").stat().st_size > 0

    out = tmp_path / "artifact"
    _ok(
        run_cli(
            "export",
            str(study),
            "--pick",
            "knee",
            "--out",
            str(out),
            "--finetune-steps",
            "0",
            env=env,
        )
    )
    manifest = json.loads((out / "manifest.json").read_text())
    chosen = {t.number: t for t in trials}[_knee_trial(report)]
    assert manifest["stored_nbytes"] == chosen.user_attrs["metrics"]["stored_bytes"]
    with safe_open(str(out / "weights.safetensors"), framework="pt") as weights:
        names = set(weights.keys())
    assert not any(n.endswith("table") for n in names) and any(n.endswith("gain") for n in names)


def _knee_trial(report: dict) -> int:
    """The knee of the reported front, recomputed from the report alone."""
    objectives = report["objectives"]
    front = [
        FrontPoint(row["trial"], tuple(row["objectives"][n] for n in objectives), {}, {}, "{}")
        for row in report["front"]
    ]
    return knee(front, objectives, report["teacher"]).number


@pytest.mark.slow
def test_teacher_l1_study_has_a_finite_front(run_cli, tmp_path: Path) -> None:
    study = _write_study(tmp_path, "l1", "[teacher_l1, stored_bytes]", "teacher_l1 <= 0.2")
    env = {"PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    _ok(run_cli("run", str(study), env=env, timeout=300))
    attrs, trials = _trials(tmp_path, "l1")
    teacher_trial = next(t for t in trials if t.user_attrs.get("reference") == "teacher")
    assert teacher_trial.state.name == "COMPLETE" and teacher_trial.values[0] == 0.0
    assert attrs["teacher_metrics"]["teacher_l1"] == 0.0
    pareto = run_cli("pareto", str(study), "--json", env=env)
    _ok(pareto)
    report = json.loads(pareto.stdout)
    assert math.isfinite(report["hypervolume"]) and report["hypervolume"] > 0
    assert report["reference_point"]["values"]["teacher_l1"] == FIDELITY_REFERENCES["teacher_l1"]
    _ok(
        run_cli(
            "export",
            str(study),
            "--pick",
            "knee",
            "--out",
            str(tmp_path / "a"),
            "--finetune-steps",
            "2",
            env=env,
        )
    )
