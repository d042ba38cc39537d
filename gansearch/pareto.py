"""The Pareto front of a study, read back from its Optuna storage.

Only COMPLETE trials whose constraints all hold (Optuna's ``constraints`` system
attribute, <= 0 = satisfied) are candidates for the front. Hypervolume is computed in a
teacher-relative space so that studies with different objectives' scales compare: each
objective is divided by the teacher's value and turned into a loss (maximised metrics
are negated), and the reference point is stated with the result (see
:func:`reference_point`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gansearch.evaluators.objectives import METRICS

# A candidate gets hypervolume credit only if it is no worse than this, teacher-relative:
# quality up to twice the teacher's FID-like loss, cost up to the teacher's own.
QUALITY_REFERENCE = 2.0
COST_REFERENCE = 1.0


@dataclass(frozen=True)
class FrontPoint:
    """One feasible Pareto-optimal trial."""

    number: int
    values: tuple[float, ...]
    metrics: Mapping[str, float | None]
    spread: Mapping[str, float | None]
    plan_json: str


def is_feasible(trial: Any) -> bool:
    constraints = trial.system_attrs.get("constraints")
    return constraints is None or all(c <= 0 for c in constraints)


def losses(values: Sequence[float], objectives: Sequence[str]) -> np.ndarray:
    """Objective values as losses (maximised objectives negated)."""
    signs = np.array([-METRICS[name].sign for name in objectives])
    return np.asarray(values, dtype=float) * signs


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``points`` (losses) that no other row dominates."""
    keep = np.ones(len(points), dtype=bool)
    for i, point in enumerate(points):
        dominated_by = np.all(points <= point, axis=1) & np.any(points < point, axis=1)
        keep[i] = not dominated_by.any()
    return keep


def pareto_front(study: Any, objectives: Sequence[str]) -> list[FrontPoint]:
    """Feasible, complete, non-dominated trials, sorted by the first objective."""
    from optuna.trial import TrialState

    trials = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_feasible(t)
    ]
    trials = [t for t in trials if all(math.isfinite(v) for v in t.values)]
    if not trials:
        return []
    mask = non_dominated(np.stack([losses(t.values, objectives) for t in trials]))
    front = [
        FrontPoint(
            t.number,
            tuple(t.values),
            t.user_attrs.get("metrics", {}),
            t.user_attrs.get("spread", {}),
            t.user_attrs.get("plan", "{}"),
        )
        for t, keep in zip(trials, mask, strict=True)
        if keep
    ]
    return sorted(front, key=lambda p: (p.values[0], p.number))


def relative_losses(
    values: Sequence[float], objectives: Sequence[str], teacher: Mapping[str, float]
) -> np.ndarray:
    """Objective values divided by the teacher's, as losses (maximised metrics negated)."""
    ratios = [value / teacher[name] for value, name in zip(values, objectives, strict=True)]
    return losses(ratios, objectives)


def reference_point(objectives: Sequence[str]) -> np.ndarray:
    """The teacher-relative hypervolume reference point (stated with every hypervolume).

    Quality objectives: ``QUALITY_REFERENCE`` x the teacher (``1 / QUALITY_REFERENCE`` x
    for maximised ones); cost objectives: ``COST_REFERENCE`` x the teacher.
    """
    point = []
    for name in objectives:
        metric = METRICS[name]
        bound = QUALITY_REFERENCE if metric.kind == "quality" else COST_REFERENCE
        if metric.direction == "maximize":
            bound = 1.0 / bound
        point.append(bound)
    return losses(point, objectives)


def hypervolume(
    points: Sequence[Sequence[float]], objectives: Sequence[str], teacher: Mapping[str, float]
) -> float:
    """Hypervolume of ``points`` (objective values) against :func:`reference_point`."""
    from optuna._hypervolume import compute_hypervolume

    reference = reference_point(objectives)
    if not points:
        return 0.0
    relative = np.stack([relative_losses(p, objectives, teacher) for p in points])
    inside = np.all(relative < reference, axis=1)
    if not inside.any():
        return 0.0
    return float(compute_hypervolume(relative[inside], reference))
