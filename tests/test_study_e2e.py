"""The main job end to end through the real CLI: run → pareto → export → load, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _study(tmp_path: Path, name: str = "e2e", **search: object) -> Path:
    """The shipped joint study with a cheap evaluation protocol and its own output folder."""
    data = yaml.safe_load((ROOT / "studies" / "digits.yaml").read_text())
    data.update(name=name, output_dir=str(tmp_path / name))
    data["evaluation"].update(
        num_samples=200,
        seeds=[0, 1],
        batch_size=200,
        kid_subsets=5,
        kid_subset_size=100,
        latency={"runs": 3, "warmup": 1},
    )
    data["search"] = {"strategy": "hybrid", "trials": 6, "population": 4, **search}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _trials(study_db: Path) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summaries = optuna.get_all_study_summaries(f"sqlite:///{study_db}")
    if not summaries:  # the file exists a moment before the study does
        return []
    study = optuna.load_study(study_name=summaries[0].study_name, storage=f"sqlite:///{study_db}")
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "plan": t.user_attrs.get("plan"),
            "reason": t.user_attrs.get("fail_reason"),
            "values": t.values,
        }
        for t in study.get_trials()
    ]


@pytest.mark.slow
def test_run_pareto_export_load(run_cli, tmp_path: Path) -> None:
    study = _study(tmp_path)
    result = run_cli("run", str(study), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Pareto front" in result.stdout
    trials = _trials(tmp_path / "e2e" / "study.db")
    assert len(trials) == 6 and all(t["state"] in {"COMPLETE", "FAIL"} for t in trials)
    assert sum(t["state"] == "COMPLETE" for t in trials) >= 4
    # the teacher itself is enqueued first, so the front is never empty
    assert trials[0]["plan"] and json.loads(trials[0]["plan"])

    listed = run_cli("studies", "--root", str(tmp_path))
    assert listed.returncode == 0 and "e2e" in listed.stdout

    pareto = run_cli("pareto", str(study), "--json", "--plot", str(tmp_path / "front"))
    assert pareto.returncode == 0, pareto.stderr
    report = json.loads(pareto.stdout)
    assert report["front"] and report["hypervolume"] is not None
    assert (tmp_path / "front.png").stat().st_size > 0 and (tmp_path / "front.html").is_file()
    # The float32 DCGAN teacher counted by hand: three ConvTranspose2d weights, three
    # BatchNorm2d (weight, bias, running mean and variance), the last Conv2d and its bias.
    conv_weights = 64 * 192 * 16 + 192 * 96 * 16 + 96 * 48 * 16 + 48 * 3 * 3
    teacher_bytes = 4 * (conv_weights + 4 * (192 + 96 + 48) + 1)
    assert report["teacher"]["stored_bytes"] == teacher_bytes

    out = tmp_path / "artifact"
    exported = run_cli(
        "export",
        str(study),
        "--pick",
        "best:stored_bytes",
        "--out",
        str(out),
        "--finetune-steps",
        "0",  # compared with the candidate as the search built it
    )
    assert exported.returncode == 0, exported.stderr
    assert {"weights.safetensors", "manifest.json", "model.onnx", "samples.png"} <= {
        p.name for p in out.iterdir()
    }

    import gansearch
    from gansearch.candidates import CandidateEvaluator
    from gansearch.compress.plan import CompressionPlan
    from gansearch.config import load_study

    manifest = json.loads((out / "manifest.json").read_text())
    config = load_study(study)
    evaluator = CandidateEvaluator(config)
    chosen = min(report["front"], key=lambda row: row["stored_bytes"])
    plan = CompressionPlan.from_json(
        next(
            t["plan"]
            for t in _trials(tmp_path / "e2e" / "study.db")
            if t["number"] == chosen["trial"]
        )
    )
    rebuilt = evaluator.build(plan)
    loaded = gansearch.load(out)
    (z,) = evaluator.benchmark.inputs.batch(16, seed=5).inputs
    with torch.no_grad():
        assert (loaded(z) - rebuilt(z)).abs().max().item() <= 1e-5
    assert manifest["stored_nbytes"] == chosen["stored_bytes"]
    # The reported compression of the exported point, from the hand count and the artifact.
    assert chosen["compression"] == pytest.approx(teacher_bytes / manifest["stored_nbytes"])


@pytest.mark.slow
def test_killed_run_resumes_without_lost_or_duplicated_trials(run_cli, tmp_path: Path) -> None:
    # a short grace period: the re-run fails the killed run's RUNNING trial once its
    # heartbeat is 3 s old (a live controller's never is; see tests/test_shared_storage.py)
    study = _study(tmp_path, name="resume", strategy="deap", heartbeat_interval=1, grace_period=3)
    db = tmp_path / "resume" / "study.db"
    env = {**os.environ, "GANSEARCH_CACHE": str(tmp_path / "cache")}
    script = Path(sys.executable).with_name("gansearch")
    process = subprocess.Popen(
        [str(script), "run", str(study)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if db.exists() and sum(t["state"] == "COMPLETE" for t in _trials(db)) >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {t["number"]: t for t in _trials(db) if t["state"] == "COMPLETE"}
    assert len(before) >= 2

    result = run_cli("run", str(study), timeout=600)
    assert result.returncode == 0, result.stderr
    after = _trials(db)
    for number, trial in before.items():  # completed trials are kept, never redone
        assert next(t for t in after if t["number"] == number) == trial
    # A FAIL trial without a recorded reason never finished its evaluation: the recorder
    # writes a reason for every failure it sees (as Optuna's fail_stale_trials leaves one).
    interrupted = [
        t
        for t in after
        if t["state"] == "FAIL" and (t["reason"] is None or t["reason"].startswith("interrupted"))
    ]
    counted = [t for t in after if t["state"] in {"COMPLETE", "FAIL"} and t not in interrupted]
    assert len(counted) == 6
    assert not [t for t in after if t["state"] in {"RUNNING", "WAITING"}]


def test_unknown_strategy_is_one_line(run_cli, tmp_path: Path) -> None:
    result = run_cli("run", str(_study(tmp_path)), "--strategy", "annealing")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip().count("\n") == 0 and "unknown strategy 'annealing'" in result.stderr
    )


def test_unreachable_storage_is_one_line(run_cli, tmp_path: Path) -> None:
    url = "postgresql+psycopg2://nobody@127.0.0.1:9/none"
    result = run_cli("run", str(_study(tmp_path)), "--storage", url, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "cannot open storage" in result.stderr


def test_bad_search_section_is_one_line(run_cli, tmp_path: Path) -> None:
    path = _study(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["search"]["constraints"] = ["fid <= lots"]
    path.write_text(yaml.safe_dump(data))
    result = run_cli("run", str(path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "search.constraints" in result.stderr and result.stderr.strip().count("\n") == 0


def test_pareto_of_a_study_never_run_is_one_line(run_cli, tmp_path: Path) -> None:
    result = run_cli("pareto", str(_study(tmp_path, name="never")))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "run `gansearch run` first" in result.stderr


def test_dashboard_of_a_study_never_run_is_one_line(run_cli, tmp_path: Path) -> None:
    result = run_cli("dashboard", str(_study(tmp_path, name="nodash")))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "run `gansearch run` first" in result.stderr
