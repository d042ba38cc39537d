"""Multi-fidelity search: the promotion rule, the cheap protocol, engines, and a tiny study."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from test_engines import no_ray_left  # noqa: F401 - a fixture used below
from test_study_e2e import _study

from gansearch.config import parse_study
from gansearch.errors import ConfigError, GansearchError
from gansearch.evaluators.objectives import Constraint
from gansearch.fidelity import Measured, cheap_config, noise_scale, promotion

OBJECTIVES = ("fid", "stored_bytes", "macs")
# The teacher: FID 10 with a spread of 1 over seeds; the cheap protocol reads it 2 higher.
TEACHER = Measured({"fid": 10.0, "stored_bytes": 1000.0, "macs": 500.0}, {"fid": 1.0})
TEACHER_CHEAP = {"fid": 12.0, "stored_bytes": 1000.0, "macs": 500.0}
SCALE = 2.0  # the cheap floor of FID is therefore 1 * 2 = 2
FRONT = (Measured({"fid": 10.5, "stored_bytes": 100.0, "macs": 500.0}, {"fid": 0.5}),)


def _decide(cheap_fid: float, stored_bytes: float = 200.0, **options):
    cheap = Measured({"fid": cheap_fid, "stored_bytes": stored_bytes, "macs": 500.0}, {"fid": 0})
    return promotion(
        cheap,
        teacher_full=TEACHER,
        teacher_cheap=TEACHER_CHEAP,
        scale=SCALE,
        objectives=OBJECTIVES,
        **options,
    )


# --------------------------------------------------------------------------- the rule


def test_dominated_by_more_than_the_noise_floor_is_dropped() -> None:
    # calibrated FID 20 - 2 = 18 > 10.5 + 2; bytes 200 >= 100; MACs equal
    decision = _decide(20.0, front=FRONT)
    assert not decision.promote and "dominated" in decision.reason


def test_dominated_within_the_noise_floor_is_promoted() -> None:
    # calibrated FID 12.4 - 2 = 10.4: better than the front point, and 12 - 2 = 10 would
    # still be within 2 of 10.5; only FID beyond 12.5 (cheap 14.5) is beyond the floor
    assert _decide(12.4, front=FRONT).promote
    assert _decide(14.4, front=FRONT).promote
    assert not _decide(14.6, front=FRONT).promote


def test_better_in_an_exact_objective_is_never_dominated() -> None:
    # far worse FID, but fewer stored bytes than the front point: it could extend the front
    assert _decide(40.0, stored_bytes=50.0, front=FRONT).promote


def test_constraint_violated_beyond_noise_is_dropped_within_noise_promoted() -> None:
    fid_bound = (Constraint.parse("fid <= 1.10 * teacher"),)  # 11 in the full protocol
    dropped = _decide(15.5, constraints=fid_bound)  # calibrated 13.5: 2.5 over, floor 2
    assert not dropped.promote and "violates" in dropped.reason
    kept = _decide(14.5, constraints=fid_bound)  # calibrated 12.5: 1.5 over, within noise
    assert kept.promote and kept.reason == "the front is empty"
    exact = (Constraint.parse("stored_bytes <= 199"),)  # exact metric: no noise at all
    assert not _decide(11.0, stored_bytes=200.0, constraints=exact).promote
    assert _decide(11.0, stored_bytes=199.0, constraints=exact).promote


def test_a_non_finite_cheap_value_is_not_promoted_past_a_constraint() -> None:
    assert not _decide(math.nan, constraints=(Constraint.parse("fid <= 20"),)).promote


# --------------------------------------------------------------------------- the protocol


def _digits(**search: object) -> dict:
    return {"name": "d", "benchmark": "digits", "search": search}


def test_cheap_protocol_and_its_noise_scale() -> None:
    config = parse_study(
        {
            **_digits(finetune_steps=30, fidelity={"seeds": 1, "num_samples": 250}),
            "evaluation": {"seeds": [4, 5, 6], "num_samples": 1000},
        }
    )
    cheap = cheap_config(config)
    assert cheap.evaluation.seeds == (4,) and cheap.evaluation.num_samples == 250
    assert cheap.evaluation.kid_subset_size == 250  # never more than the samples
    assert cheap.search.finetune_steps == 30  # unset: the search's own
    assert noise_scale(config) == pytest.approx(math.sqrt(3) * 2)
    assert parse_study(_digits(fidelity=False)).search.fidelity is None  # YAML `off`
    assert parse_study(_digits()).search.fidelity is None


@pytest.mark.parametrize(
    ("fidelity", "message"),
    [
        ({"seeds": 4}, "must be at most the number of `evaluation.seeds` (3)"),
        ({"seeds": 1, "num_samples": 2000}, "must be at most `evaluation.num_samples` (1000)"),
        ({"finetune_steps": 5}, "must be at most `search.finetune_steps` (0)"),
        ({"seeds": 3}, "is the full protocol itself"),
        ({"seed": 1}, "unknown key `search.fidelity.seed`"),
        ({"seeds": 0}, "`search.fidelity.seeds`"),
    ],
)
def test_bad_fidelity_is_one_line(fidelity: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_study(_digits(fidelity=fidelity))
    assert message in str(error.value) and "\n" not in str(error.value)


# --------------------------------------------------------------------------- engines


def _echo(params: dict, fidelity: str = "full") -> tuple[int, str]:
    return params["x"], fidelity


def _echo_factory():
    return _echo


def test_local_and_process_engines_carry_the_fidelity() -> None:
    from gansearch.search.registry import make_engine

    for options in ({}, {"timeout": 60.0}):  # LocalEngine, then ProcessEngine
        with make_engine("local", _echo_factory, **options) as engine:
            engine.submit(1, {"x": 1}, "low")
            engine.submit(2, {"x": 2})
            assert [engine.wait().result for _ in range(2)] == [(1, "low"), (2, "full")]


@pytest.mark.slow
def test_ray_engine_carries_the_fidelity(no_ray_left) -> None:  # noqa: F811
    import ray.cloudpickle

    from gansearch.search.engines import RayEngine

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    with RayEngine(_echo_factory, workers=1) as engine:
        engine.submit("a", {"x": 1}, "low")
        engine.submit("b", {"x": 2}, "full")
        assert {engine.wait().result for _ in range(2)} == {(1, "low"), (2, "full")}


# --------------------------------------------------------------------------- whole studies


def _fidelity_study(tmp_path: Path, name: str, **search: object) -> Path:
    # The teacher (enqueued first) stores 2.27 MB: exactly over the bytes bound, so its
    # cheap score is never promoted; the FID bound drops what is far over it.
    constraints = ["fid <= 1.10 * teacher", "stored_bytes <= 2MB"]
    fidelity = {"seeds": 1, "num_samples": 100}
    return _study(
        tmp_path, name=name, trials=5, fidelity=fidelity, constraints=constraints, **search
    )


def _in_process(path: Path, **options: object):
    import torch

    from gansearch.config import load_study
    from gansearch.study import run_study

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray worker does, so that the numbers match bit for bit
    try:
        return run_study(load_study(path), **options)
    finally:
        torch.set_num_threads(threads)


def _check_study(path: Path, summary) -> None:
    import optuna

    from gansearch.config import load_study
    from gansearch.pareto import pareto_front, pareto_report
    from gansearch.study_export import choose_trial

    config = load_study(path)
    study = optuna.load_study(
        study_name=config.name, storage=f"sqlite:///{path.parent}/{config.name}/study.db"
    )
    trials = study.get_trials()
    assert len(trials) == 5 and all(t.user_attrs.get("fidelity") in {"low", "full"} for t in trials)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    low = [t for t in done if t.user_attrs["fidelity"] == "low"]
    full = [t for t in done if t.user_attrs["fidelity"] == "full"]
    assert len(low) == summary.low_only >= 1 and len(full) == summary.promoted >= 1
    assert trials[0].user_attrs["fidelity"] == "low"  # the teacher, over the bytes bound
    assert all("low_metrics" in t.user_attrs for t in done)  # every one was scored cheaply first
    assert all(t.user_attrs["not_promoted"] for t in low)
    # A trial kept at low fidelity records its cheap values in the full protocol's scale:
    # shifted by the teacher's own difference between the protocols, costs unchanged.
    shifts = set()
    for trial in low:
        metrics, cheap = trial.user_attrs["metrics"], trial.user_attrs["low_metrics"]
        shifts.add(round(metrics["fid"] - cheap["fid"], 6))
        assert metrics["stored_bytes"] == cheap["stored_bytes"]
        assert trial.values == [metrics[name] for name in config.objectives]
    assert len(shifts) == 1 and shifts.pop() < 0  # FID over fewer images reads higher
    front = pareto_front(study, config.objectives, constraints=config.search.constraints)
    assert front and {p.number for p in front} <= {t.number for t in full}
    report = pareto_report(study, config.objectives, constraints=config.search.constraints)
    assert report["low_fidelity_only"] == len(low) and report["promoted"] == len(full)
    for trial in low:
        with pytest.raises(GansearchError, match="only at low fidelity"):
            choose_trial(study, config.objectives, trial=trial.number, pick=None)


def test_tiny_study_records_fidelity_and_keeps_the_front_full(tmp_path: Path) -> None:
    path = _fidelity_study(tmp_path, "mf")
    _check_study(path, _in_process(path))


@pytest.mark.slow
def test_ray_study_promotes_like_the_local_one(tmp_path: Path, no_ray_left) -> None:  # noqa: F811
    import optuna

    local = _fidelity_study(tmp_path, "local", strategy="deap")
    ray = _fidelity_study(tmp_path, "ray", strategy="deap")
    _in_process(local)
    _check_study(ray, _in_process(ray, engine="ray", workers=1))

    def recorded(name: str) -> list[tuple]:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/{name}/study.db")
        return [(t.user_attrs["plan"], t.user_attrs["fidelity"], t.values) for t in study.trials]

    assert recorded("ray") == recorded("local")


def test_low_fidelity_trial_is_off_the_front_and_not_exported() -> None:
    import optuna
    from optuna.trial import TrialState, create_trial

    from gansearch.pareto import pareto_front
    from gansearch.study_export import choose_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr("teacher_metrics", {"fid": 10.0, "stored_bytes": 100.0})
    for values, attrs in [
        ((11.0, 50.0), {}),  # an old study's trial: no attribute, full fidelity
        ((9.0, 10.0), {"fidelity": "low"}),  # would dominate, but is cheap only
        ((12.0, 40.0), {"fidelity": "full"}),
    ]:
        metrics = {"fid": values[0], "stored_bytes": values[1]}
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                values=list(values),
                user_attrs={**attrs, "metrics": metrics},
            )
        )
    front = pareto_front(study, ("fid", "stored_bytes"))
    assert [p.number for p in front] == [0, 2]
    with pytest.raises(GansearchError, match="trial 1 was scored only at low fidelity"):
        choose_trial(study, ("fid", "stored_bytes"), trial=1, pick=None)
    assert choose_trial(study, ("fid", "stored_bytes"), trial=0, pick=None).number == 0


# --------------------------------------------------------------------------- the bench


def test_bench_fidelity_refuses_bad_input(tmp_path: Path) -> None:
    from gansearch.bench.fidelity import bench_fidelity

    with pytest.raises(GansearchError, match="unknown benchmark 'nope'"):
        bench_fidelity(tmp_path, benchmark="nope")
    with pytest.raises(GansearchError, match="`--minutes` must be > 0"):
        bench_fidelity(tmp_path, minutes=0)
    (tmp_path / "digits-single-fidelity").mkdir()
    with pytest.raises(GansearchError, match="pass a fresh `--out`"):
        bench_fidelity(tmp_path, minutes=0.01)


@pytest.mark.slow
def test_bench_fidelity_runs_both_sides_for_the_same_time(tmp_path: Path) -> None:
    from gansearch.bench.fidelity import bench_fidelity

    report = bench_fidelity(tmp_path, minutes=0.1)
    single, multi = report["single"], report["multi"]
    assert single["fidelity"] is None and multi["fidelity"] is not None
    assert single["low_only"] == 0 and single["full_evaluations"] == single["candidates"] >= 1
    assert multi["full_evaluations"] + multi["low_only"] == multi["candidates"] >= 1
    assert (
        multi["promoted"] == multi["full_evaluations"]
    )  # a full score always came after a cheap one
    for side in (single, multi):
        assert side["search_seconds"] >= 6  # the budget, then the candidate in flight
        assert side["hypervolume"] >= 0 and side["front_size"] >= 1  # the teacher is feasible
