"""The Pareto front of a study, read back from its Optuna storage.

Only COMPLETE full-fidelity trials whose constraints all hold are candidates for the
front (a multi-fidelity search's ``fidelity: low`` trials are not, :mod:`gansearch.fidelity`;
trials without the attribute, from older studies, are full). Given the
study file's current ``search.constraints``, feasibility is recomputed from each trial's
stored ``metrics`` and the study's ``teacher_metrics`` (so editing the constraints takes
effect on trials recorded before; a trial lacking a metric a constraint needs is
infeasible); without them, the values recorded with the trial are read (Optuna's public
``FrozenTrial.constraints``, <= 0 = satisfied).

Hypervolume and the knee are computed in a normalised space, so that studies whose
objectives have different units compare: each objective is divided by its scale
(:func:`scale`) and turned into a loss (maximised metrics are negated), and the reference
point is stated with the result (:func:`reference_point`).

* Most objectives are teacher-relative: the scale is the teacher's own value (which must
  be a finite number > 0). The reference point is twice the teacher's quality loss
  (``QUALITY_REFERENCE``; half a maximised quality) and 1.1x its cost (``COST_REFERENCE``).
* The teacher-fidelity objectives (``teacher_l1``, ``teacher_mse``, ``teacher_psnr``)
  compare a candidate with the teacher itself, so the teacher's value is the ideal (0, or
  the 100 dB PSNR ceiling) and cannot be a scale. They use absolute scales on the output
  range ``[-1, 1]`` (width ``OUTPUT_RANGE`` = 2): ``teacher_l1 / 2``, ``teacher_mse / 4``
  and ``teacher_psnr / 100 dB``. Their reference point is an error of
  ``ERROR_REFERENCE`` = 10% of the range: L1 0.1, MSE 0.01 (0.1 squared), PSNR 20 dB
  (the PSNR of an RMS error of 10% of the range), so the teacher (error 0, 100 dB) is
  the ideal and a candidate gets credit only if it is closer to the teacher than that.

The hypervolume itself is ``moocore.hypervolume`` (exact; the algorithms of Fonseca,
Paquete and Lopez-Ibanez, CEC 2006, and Guerreiro and Fonseca, IEEE TEC 2018). The knee
is the front point nearest the ideal after min-max scaling of the normalised losses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gansearch.errors import GansearchError
from gansearch.evaluators.objectives import (
    FIDELITY_METRICS,
    METRICS,
    PSNR_CEILING_DB,
    Constraint,
)
from gansearch.fidelity import FIDELITY_ATTR, LOW, LOW_METRICS_ATTR, is_full_fidelity

# A candidate gets hypervolume credit only if it is no worse than this, teacher-relative:
# quality up to twice the teacher's FID-like loss, cost up to 1.1x the teacher's own
QUALITY_REFERENCE = 2.0
COST_REFERENCE = 1.1
# Teacher-fidelity objectives: absolute scales on the output range [-1, 1], and credit
# only for an error below 10% of that range (module docstring).
OUTPUT_RANGE = 2.0
ERROR_REFERENCE = 0.1
FIDELITY_SCALES = {
    "teacher_l1": OUTPUT_RANGE,
    "teacher_mse": OUTPUT_RANGE**2,
    "teacher_psnr": PSNR_CEILING_DB,
}
FIDELITY_REFERENCES = {
    "teacher_l1": ERROR_REFERENCE,
    "teacher_mse": ERROR_REFERENCE**2,
    "teacher_psnr": -10.0 * math.log10(ERROR_REFERENCE**2) / PSNR_CEILING_DB,
}


class TeacherValueError(GansearchError):
    """A teacher-relative objective whose teacher value cannot scale it (missing, 0, inf)."""


@dataclass(frozen=True)
class FrontPoint:
    """One feasible Pareto-optimal trial."""

    number: int
    values: tuple[float, ...]
    metrics: Mapping[str, float | None]
    spread: Mapping[str, float | None]
    plan_json: str


def is_feasible(
    trial: Any,
    constraints: Sequence[str] | None = None,
    teacher: Mapping[str, float | None] | None = None,
) -> bool:
    """Whether ``trial`` (a ``FrozenTrial``) satisfies its constraints.

    Args:
        trial: the trial.
        constraints: constraint texts (``"fid <= 1.1 * teacher"``) to judge the trial's
            stored ``metrics`` against; ``None``: the values recorded with the trial, each
            ``<= 0`` (none recorded: feasible).
        teacher: the teacher's metrics, for constraints relative to the teacher.
    """
    if constraints is None:
        return all(value <= 0 for value in trial.constraints.values())
    return not lacks_metric(trial, constraints, teacher) and all(
        Constraint.parse(text).violation(trial.user_attrs["metrics"], teacher or {}) <= 0
        for text in constraints
    )


def lacks_metric(
    trial: Any, constraints: Sequence[str], teacher: Mapping[str, float | None] | None
) -> bool:
    """Whether a constraint needs a metric ``trial`` (or the teacher) has no finite value of."""
    metrics = trial.user_attrs.get("metrics") or {}
    for text in constraints:
        constraint = Constraint.parse(text)
        if metrics.get(constraint.metric) is None:
            return True
        if constraint.relative_to_teacher and (teacher or {}).get(constraint.metric) is None:
            return True
    return False


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


def pareto_front(
    study: Any, objectives: Sequence[str], *, constraints: Sequence[str] | None = None
) -> list[FrontPoint]:
    """Feasible, complete, full-fidelity, non-dominated trials, sorted by the first objective.

    ``constraints``: the study file's current constraint texts, judged against each trial's
    stored metrics (:func:`is_feasible`); ``None``: the values recorded with each trial.
    """
    from optuna.trial import TrialState

    teacher = study.user_attrs.get("teacher_metrics") or {}
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if is_full_fidelity(t.user_attrs) and is_feasible(t, constraints, teacher)
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


def scale(name: str, teacher: Mapping[str, float | None]) -> float:
    """What objective ``name`` is divided by in the normalised space (module docstring).

    A teacher-fidelity objective: its fixed absolute scale (``FIDELITY_SCALES``); any
    other: the teacher's value.

    Raises:
        TeacherValueError: if the teacher's value is missing, not finite, or not > 0.
    """
    if name in FIDELITY_METRICS:
        return FIDELITY_SCALES[name]
    value = teacher.get(name)
    if value is None or not math.isfinite(value) or value <= 0:
        raise TeacherValueError(
            f"the teacher's {name!r} is {value!r}, which cannot scale a teacher-relative "
            f"objective (it must be a finite number > 0); run `gansearch run` again to "
            f"record the teacher's metrics, or use another objective than {name!r}"
        )
    return float(value)


def relative_losses(
    values: Sequence[float], objectives: Sequence[str], teacher: Mapping[str, float | None]
) -> np.ndarray:
    """Objective values divided by their :func:`scale`, as losses (maximised metrics negated)."""
    ratios = [value / scale(name, teacher) for value, name in zip(values, objectives, strict=True)]
    return losses(ratios, objectives)


def reference_point(objectives: Sequence[str]) -> np.ndarray:
    """The hypervolume reference point in the normalised space (stated with every hypervolume).

    Teacher-relative quality objectives: ``QUALITY_REFERENCE`` x the teacher
    (``1 / QUALITY_REFERENCE`` x for maximised ones); cost objectives: ``COST_REFERENCE`` x
    the teacher; teacher-fidelity objectives: ``FIDELITY_REFERENCES`` (an error of 10% of
    the output range).
    """
    point = []
    for name in objectives:
        metric = METRICS[name]
        if name in FIDELITY_METRICS:
            bound = FIDELITY_REFERENCES[name]
        else:
            bound = QUALITY_REFERENCE if metric.kind == "quality" else COST_REFERENCE
            if metric.direction == "maximize":
                bound = 1.0 / bound
        point.append(bound)
    return losses(point, objectives)


def hypervolume(
    points: Sequence[Sequence[float]],
    objectives: Sequence[str],
    teacher: Mapping[str, float | None],
) -> float:
    """Hypervolume of ``points`` (objective values) against :func:`reference_point`.

    Points are made normalised losses (:func:`relative_losses`); only those strictly
    better than the reference point in every objective add volume.
    """
    import moocore

    reference = reference_point(objectives)
    if not points:
        return 0.0
    relative = np.stack([relative_losses(p, objectives, teacher) for p in points])
    inside = np.all(relative < reference, axis=1)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(relative[inside], ref=reference))


def knee(
    front: Sequence[FrontPoint], objectives: Sequence[str], teacher: Mapping[str, float | None]
) -> FrontPoint:
    """The front point closest to the ideal point after per-objective min-max scaling.

    With several objectives there is no unique "knee"; this is the usual compromise
    choice (closest to utopia in the normalised space of :func:`relative_losses`,
    min-max scaled), stated so it reproduces.
    """
    if not front:
        raise ValueError("the front is empty: no feasible completed trial")
    relative = np.stack([relative_losses(p.values, objectives, teacher) for p in front])
    low, high = relative.min(axis=0), relative.max(axis=0)
    scaled = (relative - low) / np.where(high > low, high - low, 1.0)
    return front[int(np.argmin(np.linalg.norm(scaled, axis=1)))]


def best(front: Sequence[FrontPoint], metric_name: str) -> FrontPoint:
    """The front point best in one metric (its declared direction)."""
    if metric_name not in METRICS:
        raise ValueError(f"unknown metric {metric_name!r}; known: {', '.join(sorted(METRICS))}")
    scored = [p for p in front if p.metrics.get(metric_name) is not None]
    if not scored:
        raise ValueError(f"no front point has a finite {metric_name!r}")
    sign = METRICS[metric_name].sign
    return max(scored, key=lambda p: sign * float(p.metrics[metric_name]))


def compression(
    point: FrontPoint, objectives: Sequence[str], teacher: Mapping[str, float | None]
) -> float:
    """Log of the product of teacher / candidate over the teacher's cost objectives."""
    total = 0.0
    for name in objectives:
        if METRICS[name].kind != "cost" or not teacher.get(name):
            continue
        value = point.metrics.get(name)
        if value is None or value <= 0:
            return -math.inf
        total += math.log(float(teacher[name]) / float(value))
    return total


def most_compressed(
    front: Sequence[FrontPoint], objectives: Sequence[str], teacher: Mapping[str, float | None]
) -> FrontPoint:
    """The front point with the largest :func:`compression` (a halving of bytes and of MACs
    weigh alike; quality enters through the constraints): ``bench headline``'s pick."""
    if not front:
        raise ValueError("the front is empty: no feasible completed trial")
    if not any(METRICS[o].kind == "cost" and teacher.get(o) for o in objectives):
        raise ValueError("`--pick compression` needs a cost objective the teacher has")
    return max(front, key=lambda point: compression(point, objectives, teacher))


@dataclass(frozen=True)
class PlotPoint:
    number: int
    quality: float
    cost: float
    label: str  # "front", "dominated", "infeasible", or a reference plan name (e.g. "teacher")


def plot_points(
    study: Any, quality: str, cost: str, *, constraints: Sequence[str] | None = None
) -> list[PlotPoint]:
    """Every COMPLETE full-fidelity trial with both metrics, labelled (feasibility as in
    :func:`is_feasible`)."""
    from optuna.trial import TrialState

    teacher = study.user_attrs.get("teacher_metrics") or {}
    points = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        metrics = trial.user_attrs.get("metrics", {})
        if metrics.get(quality) is None or metrics.get(cost) is None:
            continue
        if not is_full_fidelity(trial.user_attrs):  # cheap values do not compare
            continue
        label = trial.user_attrs.get("reference") or (
            "dominated" if is_feasible(trial, constraints, teacher) else "infeasible"
        )
        points.append(PlotPoint(trial.number, float(metrics[quality]), float(metrics[cost]), label))
    return points


def write_plots(
    study: Any,
    front: Sequence[FrontPoint],
    quality: str,
    cost: str,
    path_png: Any,
    path_html: Any,
    *,
    constraints: Sequence[str] | None = None,
) -> None:
    """PNG (matplotlib) and HTML (plotly) of quality against cost, front and references marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = plot_points(study, quality, cost, constraints=constraints)
    on_front = {p.number for p in front}
    figure, axes = plt.subplots(figsize=(7, 5))
    others = [
        p for p in points if p.number not in on_front and p.label in {"dominated", "infeasible"}
    ]
    axes.scatter(
        [p.cost for p in others], [p.quality for p in others], s=12, c="0.7", label="other trials"
    )
    front_points = sorted((p for p in points if p.number in on_front), key=lambda p: p.cost)
    axes.plot(
        [p.cost for p in front_points],
        [p.quality for p in front_points],
        "o-",
        c="tab:blue",
        label="Pareto front (feasible)",
    )
    for p in points:
        if p.label not in {"dominated", "infeasible"}:
            axes.scatter([p.cost], [p.quality], marker="*", s=140, zorder=3, label=p.label)
    axes.set_xscale("log")
    # teacher_l1 / teacher_mse are 0 at the teacher, which a log axis cannot show
    axes.set_yscale("log" if all(p.quality > 0 for p in points) else "linear")
    axes.set_xlabel(f"{cost} ({METRICS[cost].direction[:3]})")
    axes.set_ylabel(f"{quality} ({METRICS[quality].direction[:3]})")
    axes.set_title(f"{study.study_name}: {len(points)} trials, {len(front)} on the front")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path_png, dpi=120)
    plt.close(figure)
    try:
        import plotly.graph_objects as go
    except ImportError:  # plotly is a dependency; keep the PNG if an install lacks it
        return
    fig = go.Figure()
    for label in sorted({p.label for p in points}):
        chosen = [p for p in points if p.label == label and p.number not in on_front]
        if chosen:
            fig.add_scatter(
                x=[p.cost for p in chosen],
                y=[p.quality for p in chosen],
                mode="markers",
                name=label,
                text=[f"trial {p.number}" for p in chosen],
            )
    fig.add_scatter(
        x=[p.cost for p in front_points],
        y=[p.quality for p in front_points],
        mode="lines+markers",
        name="Pareto front",
        text=[f"trial {p.number}" for p in front_points],
    )
    fig.update_layout(
        title=study.study_name, xaxis_title=cost, yaxis_title=quality, xaxis_type="log"
    )
    fig.write_html(str(path_html), include_plotlyjs=True)


def pick(
    front: Sequence[FrontPoint],
    how: str,
    objectives: Sequence[str],
    teacher: Mapping[str, float | None],
) -> FrontPoint:
    """``"knee"`` (:func:`knee`), ``"compression"`` (:func:`most_compressed`) or
    ``"best:<metric>"`` (:func:`best`)."""
    if how == "knee":
        return knee(front, objectives, teacher)
    if how == "compression":
        return most_compressed(front, objectives, teacher)
    if how.startswith("best:"):
        return best(front, how.removeprefix("best:"))
    raise ValueError(f"`--pick` must be 'knee', 'compression' or 'best:<metric>', got {how!r}")


def _ratio(teacher: float | None, value: float | None) -> float | None:
    if teacher is None or value is None or value == 0:
        return None
    return teacher / value


def pareto_report(
    study: Any, objectives: Sequence[str], *, constraints: Sequence[str] | None = None
) -> dict[str, Any]:
    """Everything ``gansearch pareto`` shows, as JSON-ready data.

    ``constraints``: the study file's current constraints (see :func:`pareto_front`);
    ``unjudged`` lists the COMPLETE trials counted infeasible because they lack a metric
    one of them needs. ``hypervolume`` is ``None`` when the study has no teacher metrics,
    or when a teacher value cannot scale its objective (``hypervolume_unavailable`` says
    why). ``low_fidelity_only`` counts the trials a multi-fidelity search kept at low
    fidelity (never on the front), ``promoted`` those it scored in full after a cheap score.
    """
    from optuna.trial import TrialState

    teacher = study.user_attrs.get("teacher_metrics") or {}
    front = pareto_front(study, objectives, constraints=constraints)
    every = study.get_trials(deepcopy=False)
    quality = next((n for n in objectives if METRICS[n].kind == "quality"), "fid")
    rows = []
    for point in front:
        metrics = point.metrics
        rows.append(
            {
                "trial": point.number,
                "quality_metric": quality,
                "quality": metrics.get(quality),
                "quality_spread": point.spread.get(quality),
                "stored_bytes": metrics.get("stored_bytes"),
                "compression": _ratio(teacher.get("stored_bytes"), metrics.get("stored_bytes")),
                "macs": metrics.get("macs"),
                "macs_reduction": _ratio(teacher.get("macs"), metrics.get("macs")),
                "latency_ms": metrics.get("latency_ms"),
                "latency_speedup": _ratio(teacher.get("latency_ms"), metrics.get("latency_ms")),
                "objectives": dict(zip(objectives, point.values, strict=True)),
            }
        )
    reference = reference_point(objectives)
    volume, unavailable = None, None
    if teacher:
        try:
            volume = hypervolume([p.values for p in front], objectives, teacher)
        except TeacherValueError as error:
            unavailable = str(error)
    return {
        "study": study.study_name,
        "objectives": list(objectives),
        "constraints": list(constraints)
        if constraints is not None
        else study.user_attrs.get("constraints", []),
        "unjudged": []
        if constraints is None
        else [
            t.number
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if lacks_metric(t, constraints, teacher)
        ],
        "teacher": teacher,
        "trials": len(every),
        "low_fidelity_only": sum(t.user_attrs.get(FIDELITY_ATTR) == LOW for t in every),
        "promoted": sum(
            is_full_fidelity(t.user_attrs) and LOW_METRICS_ATTR in t.user_attrs for t in every
        ),
        "front": rows,
        "hypervolume": volume,
        "hypervolume_unavailable": unavailable,
        "reference_point": {
            "space": "objective / scale, as losses (maximised metrics negated); scale: the "
            "teacher's value, or an absolute one for teacher-fidelity metrics",
            "scales": {
                name: FIDELITY_SCALES[name] if name in FIDELITY_METRICS else "teacher"
                for name in objectives
            },
            "values": dict(zip(objectives, reference.tolist(), strict=True)),
        },
    }
