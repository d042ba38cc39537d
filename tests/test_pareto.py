"""Known-answer tests for gansearch.pareto: every expected number is worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from gansearch.pareto import (
    FrontPoint,
    best,
    hypervolume,
    is_feasible,
    knee,
    losses,
    non_dominated,
    pareto_front,
    pareto_report,
    pick,
    reference_point,
    relative_losses,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _point(number: int, values: tuple[float, ...], **metrics: float | None) -> FrontPoint:
    return FrontPoint(number, values, metrics, {}, "{}")


def _complete(
    values: list[float], constraints: dict[str, float] | None = None, **user_attrs: Any
) -> FrozenTrial:
    return create_trial(
        state=TrialState.COMPLETE, values=values, constraints=constraints, user_attrs=user_attrs
    )


# --------------------------------------------------------------------------- loss space


def test_losses_negate_maximised_objectives_only() -> None:
    values = [10.0, 30.0, 5.0, 0.75]
    objectives = ["fid", "teacher_psnr", "macs", "ssim"]
    np.testing.assert_array_equal(losses(values, objectives), [10.0, -30.0, 5.0, -0.75])


def test_relative_losses_divide_by_the_teacher() -> None:
    teacher = {"fid": 10.0, "is": 40.0, "macs": 100.0}
    relative = relative_losses([5.0, 20.0, 50.0], ["fid", "is", "macs"], teacher)
    np.testing.assert_array_equal(relative, [0.5, -0.5, 0.5])


def test_reference_point_per_kind_and_direction() -> None:
    # quality: 2x the teacher (1/2 x when maximised, then negated); cost: 1.1x the teacher.
    objectives = ["fid", "is", "macs", "ssim", "latency_ms"]
    np.testing.assert_allclose(reference_point(objectives), [2.0, -0.5, 1.1, -0.5, 1.1])


# --------------------------------------------------------------------------- dominance


def test_non_dominated_keeps_ties_and_drops_dominated() -> None:
    points = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [2, 2], [5, 5], [1, 5]], dtype=float)
    # [3, 3] and [5, 5] are dominated by [2, 2]; [1, 5] by [1, 4]; equal rows do not
    # dominate each other.
    assert non_dominated(points).tolist() == [True, True, True, False, True, False, False]


def test_non_dominated_three_objectives() -> None:
    points = np.array([[1, 2, 3], [3, 2, 1], [2, 2, 2], [2, 3, 3], [1, 2, 4]], dtype=float)
    assert non_dominated(points).tolist() == [True, True, True, False, False]


# --------------------------------------------------------------------------- hypervolume


def test_hypervolume_two_boxes_2d() -> None:
    # Relative losses (0.5, 0.5) and (1.0, 0.2) against the reference (2.0, 1.1):
    # boxes 1.5 x 0.6 = 0.9 and 1.0 x 0.9 = 0.9, overlap 1.0 x 0.6 = 0.6; union 1.2.
    teacher = {"fid": 10.0, "macs": 100.0}
    objectives = ["fid", "macs"]
    assert hypervolume([(5.0, 50.0), (10.0, 20.0)], objectives, teacher) == pytest.approx(1.2)
    # A dominated point, one on the reference boundary and one beyond it add nothing.
    extra = [(8.0, 60.0), (20.0, 10.0), (30.0, 5.0)]
    assert hypervolume([(5.0, 50.0), (10.0, 20.0), *extra], objectives, teacher) == pytest.approx(
        1.2
    )
    assert hypervolume([(5.0, 50.0)], objectives, teacher) == pytest.approx(0.9)


def test_hypervolume_with_a_maximised_objective() -> None:
    # is is maximised: loss -is/teacher, reference -1/2. Points (-1.0, 0.5)
    # and (-0.75, 0.25) against (-0.5, 1.1): 0.5 x 0.6 + 0.25 x 0.85 - 0.25 x 0.6.
    teacher = {"is": 40.0, "stored_bytes": 1000.0}
    value = hypervolume([(40.0, 500.0), (30.0, 250.0)], ["is", "stored_bytes"], teacher)
    assert value == pytest.approx(0.3 + 0.2125 - 0.15)


def test_hypervolume_three_boxes_3d() -> None:
    # Reference (2, 1.1, 1.1). Box of (1, 0.1, 0.1): 1 x 1 x 1 = 1. Box of (0.5, 0.6, 0.6):
    # 1.5 x 0.5 x 0.5 = 0.375, overlapping the first in 1 x 0.5 x 0.5 = 0.25.
    # (1.5, 0.1, 0.1) lies inside the first box and adds nothing.
    teacher = {"fid": 1.0, "macs": 1.0, "stored_bytes": 1.0}
    objectives = ["fid", "macs", "stored_bytes"]
    points = [(1.0, 0.1, 0.1), (0.5, 0.6, 0.6), (1.5, 0.1, 0.1)]
    assert hypervolume(points, objectives, teacher) == pytest.approx(1.0 + 0.375 - 0.25)
    assert hypervolume(points[:1], objectives, teacher) == pytest.approx(1.0)


def test_hypervolume_is_zero_without_points_inside() -> None:
    teacher = {"fid": 1.0, "macs": 1.0}
    assert hypervolume([], ["fid", "macs"], teacher) == 0.0
    assert hypervolume([(3.0, 0.5), (1.0, 2.0)], ["fid", "macs"], teacher) == 0.0


# --------------------------------------------------------------------------- choosing a point


def test_knee_is_closest_to_utopia_after_min_max_scaling() -> None:
    # Scaled: A (0, 1), B (1/9, 1/9), C (1, 0); B is nearest to (0, 0).
    front = [_point(0, (1.0, 10.0)), _point(1, (2.0, 2.0)), _point(2, (10.0, 1.0))]
    teacher = {"fid": 1.0, "macs": 1.0}
    assert knee(front, ["fid", "macs"], teacher).number == 1
    assert pick(front, "knee", ["fid", "macs"], teacher).number == 1
    assert knee(front[:1], ["fid", "macs"], teacher).number == 0
    with pytest.raises(ValueError, match="empty"):
        knee([], ["fid", "macs"], teacher)


def test_best_follows_the_metric_direction() -> None:
    front = [
        _point(0, (1.0,), fid=3.0, teacher_psnr=20.0),
        _point(1, (2.0,), fid=1.0, teacher_psnr=25.0),
        _point(2, (3.0,), fid=2.0, teacher_psnr=30.0),
        _point(3, (4.0,), fid=None, teacher_psnr=None),
    ]
    assert best(front, "fid").number == 1  # minimised
    assert best(front, "teacher_psnr").number == 2  # maximised
    assert pick(front, "best:teacher_psnr", ["fid"], {"fid": 1.0}).number == 2
    with pytest.raises(ValueError, match="unknown metric"):
        best(front, "sharpness")
    with pytest.raises(ValueError, match="no front point"):
        best(front, "macs")
    with pytest.raises(ValueError, match="knee"):
        pick(front, "middle", ["fid"], {"fid": 1.0})


# --------------------------------------------------------------------------- feasibility


def test_feasibility_reads_public_constraints() -> None:
    assert is_feasible(_complete([1.0]))
    assert is_feasible(_complete([1.0], {"fid": 0.0, "stored_bytes": -0.5}))
    assert not is_feasible(_complete([1.0], {"fid": -1.0, "stored_bytes": 0.01}))
    # Studies written with Optuna's older list format still read through the same property.
    old = create_trial(
        state=TrialState.COMPLETE, values=[1.0], system_attrs={"constraints": [-1.0, 2.0]}
    )
    assert not is_feasible(old)


def test_feasibility_recomputed_from_stored_metrics_and_current_constraints() -> None:
    teacher = {"fid": 10.0, "stored_bytes": 1000.0}
    # recorded as feasible under an old, looser constraint
    trial = _complete([1.0], {"0": -0.5}, metrics={"fid": 12.0, "stored_bytes": 400.0})
    assert is_feasible(trial)  # the recorded values
    assert is_feasible(trial, ["fid <= 1.2 * teacher"], teacher)  # 12 <= 12
    assert not is_feasible(trial, ["fid <= 1.1 * teacher"], teacher)  # 12 > 11
    assert is_feasible(trial, ["stored_bytes <= 400"], teacher)
    assert not is_feasible(trial, ["fid <= 2 * teacher", "stored_bytes <= 0.3 * teacher"], teacher)
    assert is_feasible(trial, [], teacher)  # no constraints now: every trial is feasible
    # a metric the trial (or, for a relative bound, the teacher) lacks: infeasible
    assert not is_feasible(trial, ["macs <= 1e9"], teacher)
    assert not is_feasible(_complete([1.0], metrics={"fid": None}), ["fid <= 100"], teacher)
    assert not is_feasible(trial, ["fid <= 1.1 * teacher"], {})


def test_pareto_front_judges_the_current_constraints() -> None:
    study = _study(["minimize", "minimize"])
    study.set_user_attr("teacher_metrics", {"fid": 10.0, "stored_bytes": 1000.0})
    # all three recorded feasible (no constraint values), none dominating another
    study.add_trial(_complete([9.0, 900.0], metrics={"fid": 9.0, "stored_bytes": 900.0}))  # 0
    study.add_trial(_complete([12.0, 300.0], metrics={"fid": 12.0, "stored_bytes": 300.0}))  # 1
    study.add_trial(_complete([15.0, 100.0], metrics={"stored_bytes": 100.0}))  # 2: no fid
    objectives = ["fid", "stored_bytes"]
    assert [p.number for p in pareto_front(study, objectives)] == [0, 1, 2]
    now = ["fid <= 1.1 * teacher"]
    assert [p.number for p in pareto_front(study, objectives, constraints=now)] == [0]
    report = pareto_report(study, objectives, constraints=now)
    assert [row["trial"] for row in report["front"]] == [0]
    assert report["constraints"] == now and report["unjudged"] == [2]
    teacher = study.user_attrs["teacher_metrics"]
    front = pareto_front(study, objectives, constraints=now)
    assert pick(front, "knee", objectives, teacher).number == 0


# --------------------------------------------------------------------------- study front


def _study(directions: list[str]) -> optuna.Study:
    return optuna.create_study(directions=directions, storage=optuna.storages.InMemoryStorage())


def test_pareto_front_of_a_study() -> None:
    study = _study(["minimize", "minimize"])
    study.add_trial(_complete([3.0, 1.0], metrics={"fid": 3.0}, plan='{"a": 1}'))  # 0
    study.add_trial(_complete([1.0, 3.0]))  # 1
    study.add_trial(_complete([2.0, 2.0], {"fid": -0.1}))  # 2
    study.add_trial(_complete([0.5, 0.5], {"fid": 0.2}))  # 3: infeasible, would dominate all
    study.add_trial(create_trial(state=TrialState.FAIL))  # 4
    study.add_trial(_complete([3.0, 3.0]))  # 5: dominated by 2
    study.add_trial(_complete([2.0, 2.0]))  # 6: ties with 2, both kept
    study.add_trial(_complete([math.inf, 0.1]))  # 7: not finite
    study.add_trial(create_trial(state=TrialState.PRUNED))  # 8
    front = pareto_front(study, ["fid", "macs"])
    assert [p.number for p in front] == [1, 2, 6, 0]
    assert front[-1] == FrontPoint(0, (3.0, 1.0), {"fid": 3.0}, {}, '{"a": 1}')
    assert pareto_front(_study(["minimize", "minimize"]), ["fid", "macs"]) == []


def test_pareto_front_with_a_maximised_objective() -> None:
    study = _study(["minimize", "maximize"])
    study.add_trial(_complete([1.0, 20.0]))
    study.add_trial(_complete([2.0, 30.0]))
    study.add_trial(_complete([2.0, 25.0]))  # same fid as trial 1, lower PSNR: dominated
    study.add_trial(_complete([0.5, 10.0]))
    front = pareto_front(study, ["fid", "teacher_psnr"])
    assert [p.number for p in front] == [3, 0, 1]


def test_pareto_report_ratios_and_hypervolume() -> None:
    study = _study(["minimize", "minimize"])
    study.set_user_attr("teacher_metrics", {"fid": 10.0, "stored_bytes": 1000.0, "macs": 400.0})
    study.add_trial(
        _complete([5.0, 500.0], metrics={"fid": 5.0, "stored_bytes": 500.0, "macs": 100.0})
    )
    study.add_trial(
        _complete([10.0, 200.0], metrics={"fid": 10.0, "stored_bytes": 200.0, "macs": None})
    )
    report = pareto_report(study, ["fid", "stored_bytes"])
    assert report["trials"] == 2
    rows = report["front"]
    assert [row["trial"] for row in rows] == [0, 1]
    assert rows[0]["compression"] == pytest.approx(2.0)
    assert rows[0]["macs_reduction"] == pytest.approx(4.0)
    assert rows[1]["compression"] == pytest.approx(5.0)
    assert rows[1]["macs_reduction"] is None
    # The same two boxes as test_hypervolume_two_boxes_2d: 0.9 + 0.9 - 0.6.
    assert report["hypervolume"] == pytest.approx(1.2)
    assert report["reference_point"]["values"] == pytest.approx({"fid": 2.0, "stored_bytes": 1.1})
