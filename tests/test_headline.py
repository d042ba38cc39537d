"""Export fine-tunes by default, `--pick compression`, and `gansearch bench headline`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from gansearch.errors import GansearchError
from gansearch.pareto import FrontPoint, most_compressed, pick

ROOT = Path(__file__).resolve().parents[1]
TEACHER = {"fid": 100.0, "stored_bytes": 1000.0, "macs": 100.0}
OBJECTIVES = ("fid", "stored_bytes", "macs")


def _point(number: int, fid: float, stored: float, macs: float) -> FrontPoint:
    metrics = {"fid": fid, "stored_bytes": stored, "macs": macs}
    return FrontPoint(number, (fid, stored, macs), metrics, {}, "{}")


def test_pick_compression_takes_the_largest_geometric_mean_cost_ratio() -> None:
    front = [
        _point(0, 100.0, 1000.0, 100.0),  # the teacher: 1x, 1x
        _point(1, 105.0, 10.0, 100.0),  # 100x bytes, 1x MACs: product 100
        _point(2, 108.0, 50.0, 4.0),  # 20x bytes, 25x MACs: product 500
        _point(3, 101.0, 100.0, 20.0),  # 10x, 5x: product 50
    ]
    assert most_compressed(front, OBJECTIVES, TEACHER).number == 2
    assert pick(front, "compression", OBJECTIVES, TEACHER).number == 2
    with pytest.raises(ValueError, match="compression"):
        pick(front, "smallest", OBJECTIVES, TEACHER)
    with pytest.raises(ValueError, match="cost objective"):
        most_compressed(front, ("fid",), TEACHER)


def test_refinement_promotes_only_candidates_that_could_enter_the_feasible_front() -> None:
    """Unconstrained-front points more compressed than the feasible front's most
    compressed one, with quality inside the hypervolume reference (2x the teacher's FID),
    most compressed first (gansearch.refine's stated rule)."""
    import optuna

    from gansearch.refine import refinement_candidates

    study = optuna.create_study(directions=["minimize"] * 3)
    study.set_user_attr("teacher_metrics", {"fid": 116.0, "stored_bytes": 1000.0, "macs": 100.0})
    rows = {
        "teacher": (110.0, 1000.0, 100.0),  # feasible
        "front": (125.0, 100.0, 50.0),  # feasible, 20x the teacher's product of costs
        "rescuable": (150.0, 20.0, 10.0),  # infeasible, 500x, FID < 232: promoted
        "rescuable-2": (200.0, 10.0, 10.0),  # infeasible, 1000x: promoted first
        "hopeless": (3000.0, 10.0, 5.0),  # outside the reference point
        "dominated": (160.0, 30.0, 10.0),  # dominated by "rescuable"
        "bigger": (140.0, 200.0, 100.0),  # less compressed than "front"
    }
    for name, (fid, stored, macs) in rows.items():
        metrics = {"fid": fid, "stored_bytes": stored, "macs": macs}
        study.add_trial(
            optuna.trial.create_trial(
                values=[fid, stored, macs], user_attrs={"metrics": metrics, "plan": name}
            )
        )
    constraints = ("fid <= 1.1 * teacher",)
    chosen = refinement_candidates(study, OBJECTIVES, constraints, 3)
    assert [p.plan_json for p in chosen] == ["rescuable-2", "rescuable"]
    assert [p.plan_json for p in refinement_candidates(study, OBJECTIVES, constraints, 1)] == [
        "rescuable-2"
    ]
    assert refinement_candidates(study, OBJECTIVES, constraints, 0) == []


def _tiny_digits(
    tmp_path: Path, name: str, search_finetune_steps: int = 0, **export: object
) -> Path:
    """The shipped digits study with a cheap protocol and a tiny search budget."""
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
    data["distill"]["batch_size"] = 16
    data["space"] = {
        "prune": None,
        "ofa": None,
        "bits": [4, 8, 32],
        "codebook": [0],
        "lowrank": None,
    }
    data["search"] = {
        "strategy": "optuna",
        "trials": 4,
        "constraints": ["fid <= 3 * teacher"],
        "finetune_steps": search_finetune_steps,
    }
    data["export"] = dict(export)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_export_fine_tunes_by_default_and_never_returns_a_worse_state(tmp_path: Path) -> None:
    from gansearch.candidates import CandidateEvaluator
    from gansearch.compress.artifact import load
    from gansearch.config import load_study
    from gansearch.evaluate import validation_measure
    from gansearch.study import run_study
    from gansearch.study_export import export_trial

    config = load_study(_tiny_digits(tmp_path, "tuned", finetune_steps=6))
    assert config.export.finetune_steps == 6
    evaluator = CandidateEvaluator(config)
    run_study(config, evaluator=evaluator)
    result = export_trial(config, tmp_path / "a", pick="best:stored_bytes", evaluator=evaluator)

    tuned = result["finetune"]
    assert tuned["steps"] == 6 and tuned["seconds"] > 0
    steps, values = zip(*tuned["validation"], strict=True)
    assert steps[0] == 0 and tuned["best_step"] == steps[values.index(min(values))]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["metrics"]["finetune_steps"] == 6
    # Never worse on the held-out measure: the artifact scores at most the start's value
    # (step 0 is the candidate as the search scored it); rounding to the stored dtypes
    # may move it by a hair.
    measure = validation_measure(evaluator.benchmark, config)
    assert measure(load(tmp_path / "a")) <= values[0] * 1.001
    assert set(result["constraints"]) == {"fid <= 3 * teacher"}
    assert result["artifact_metrics"]["stored_bytes"] == manifest["stored_nbytes"]

    plain = export_trial(
        config, tmp_path / "b", pick="best:stored_bytes", evaluator=evaluator, finetune_steps=0
    )
    assert plain["finetune"] == {"steps": 0}


def test_validation_measure_is_the_study_metric_on_held_out_inputs(tmp_path: Path) -> None:
    import copy

    from gansearch.benchmarks import load_benchmark
    from gansearch.config import load_study
    from gansearch.evaluate import VALIDATION_SEED, prepare_scorer, validation_measure

    config = load_study(_tiny_digits(tmp_path, "val"))
    benchmark = load_benchmark(config)
    measure = validation_measure(benchmark, config)
    teacher = benchmark.teacher.eval()
    assert VALIDATION_SEED not in config.evaluation.seeds
    broken = copy.deepcopy(teacher)
    with torch.no_grad():
        for parameter in broken.parameters():
            parameter.mul_(0.5)
    assert measure(teacher) < measure(broken)  # FID: lower is better, the loss is FID
    held_out = config.model_copy(
        update={"evaluation": config.evaluation.model_copy(update={"seeds": (VALIDATION_SEED,)})}
    )
    scorer = prepare_scorer(benchmark, held_out, teacher_fidelity=False)
    assert math.isclose(measure(teacher), scorer.quality(teacher)[0]["fid"][0], rel_tol=1e-6)


@pytest.mark.slow
def test_bench_headline_reports_the_artifact_beside_the_teacher(tmp_path: Path) -> None:
    from gansearch.bench.headline import bench_headline

    study = _tiny_digits(tmp_path, "headline")
    stages: list[str] = []
    report = bench_headline(
        "digits", tmp_path / "out", study=study, trials=4, finetune_steps=3, on_stage=stages.append
    )
    assert stages == ["load", "sensitivity", "search", "refine", "export", "measure"]
    assert (tmp_path / "out" / "sensitivity.json").is_file()  # the guided plans' table
    manifest = json.loads((Path(report["artifact"]) / "manifest.json").read_text())
    rows = {row["metric"]: row for row in report["rows"]}
    assert rows["stored_bytes"]["artifact"] == manifest["stored_nbytes"]
    assert rows["stored_bytes"]["ratio"] == pytest.approx(
        rows["stored_bytes"]["teacher"] / manifest["stored_nbytes"]
    )
    assert rows["fid"]["ratio"] is None and rows["fid"]["artifact_spread"] is not None
    assert report["finetune"]["steps"] == 3
    assert report["exported_from"] in {"search front", "refinement"}
    for row in report["refined"]:  # candidates outside the front, distilled and re-scored
        assert row["distilled"]["stored_bytes"] == row["searched"]["stored_bytes"]
    goals = report["goals"]
    expected = (
        rows["stored_bytes"]["ratio"] >= goals["stored_bytes_ratio"]
        and rows["macs"]["ratio"] >= goals["macs_ratio"]
        and all(report["constraints"].values())
    )
    assert goals["met"] is expected
    assert report["trials"] == 4 and set(report["seconds"]) >= {"search", "export", "total"}
    with pytest.raises(GansearchError, match="not empty"):
        bench_headline("digits", tmp_path / "out", study=study)


def test_headline_and_supernet_comparison_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gansearch.cli import app

    runner = CliRunner()
    unknown = runner.invoke(
        app, ["bench", "headline", "--benchmark", "cifar", "--out", str(tmp_path)]
    )
    assert unknown.exit_code == 2 and "unknown benchmark 'cifar'" in unknown.stderr
    (tmp_path / "mine.txt").write_text("keep")
    busy = runner.invoke(app, ["bench", "headline", "--out", str(tmp_path)])
    assert busy.exit_code == 2 and "is not empty" in busy.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep"
    bits = runner.invoke(
        app,
        ["bench", "supernet", "studies/digits.yaml", "--against", str(tmp_path), "--bits", "1"],
    )
    assert bits.exit_code == 2 and "`--bits` must be 2..8 or 32" in bits.stderr
    for result in (unknown, busy, bits):
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.slow
def test_in_search_fine_tune_time_is_recorded_and_shown(tmp_path: Path) -> None:
    import optuna
    from typer.testing import CliRunner

    from gansearch.cli import app

    study = _tiny_digits(tmp_path, "timed", search_finetune_steps=3)
    result = CliRunner().invoke(app, ["run", str(study), "--trials", "2"])
    assert result.exit_code == 0, result.output
    assert "in-search fine-tune (3 steps per candidate):" in result.stdout
    storage = f"sqlite:///{tmp_path / 'timed' / 'study.db'}"
    trials = optuna.load_study(study_name="timed", storage=storage).get_trials()
    for trial in trials:
        tuned = trial.user_attrs["finetune_seconds"]
        assert 0 < tuned < trial.user_attrs["seconds"]
