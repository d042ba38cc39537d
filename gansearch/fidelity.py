"""Multi-fidelity search: the cheap protocol (``search.fidelity``) and the promotion rule.

With ``search.fidelity`` set, every proposal is first scored under a cheap protocol (the
first ``seeds`` evaluation seeds, ``num_samples`` images per seed, ``finetune_steps``
distillation steps). Only candidates that could still enter the feasible front are then
scored under the full protocol; the others keep their cheap values, and their trials say
``fidelity: low``. This is the multi-fidelity idea of successive halving (Jamieson and
Talwalkar, Non-stochastic Best Arm Identification and Hyperparameter Optimization,
AISTATS 2016) and Hyperband (Li et al., JMLR 2018), with one change: those rank one
metric and keep a fixed top fraction, whereas a compression study has several objectives
and constraints, so a candidate is dropped only when the cheap measurement shows, beyond
its noise, that it cannot be feasible or cannot be Pareto-optimal (noisy Pareto ranking,
in the spirit of Hughes, Evolutionary Multi-objective Ranking with Uncertainty and Noise,
EMO 2001: a point is dominated only when the other one is better by more than the noise).

Everything here is plain numbers (no torch, no Optuna): :func:`promotion` decides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from gansearch.evaluation_config import Section
from gansearch.evaluators.objectives import METRICS, Constraint

if TYPE_CHECKING:
    from gansearch.config import StudyConfig

Fidelity = Literal["low", "full"]
LOW: Fidelity = "low"
FULL: Fidelity = "full"
FIDELITY_ATTR = "fidelity"
"""The trial user attribute naming the fidelity its values were measured at."""
LOW_METRICS_ATTR = "low_metrics"
"""The trial user attribute holding a promoted trial's cheap metrics."""


class FidelityConfig(Section):
    """The cheap protocol of a multi-fidelity search (``search.fidelity``).

    ``seeds``: how many of ``evaluation.seeds`` (the first ones); ``num_samples``: images
    per seed (unset: ``evaluation.num_samples``); ``finetune_steps``: distillation steps
    (unset: ``search.finetune_steps``). It must be cheaper than the full protocol in at
    least one of the three.
    """

    seeds: int = Field(1, ge=1)
    num_samples: int | None = Field(None, ge=16)
    finetune_steps: int | None = Field(None, ge=0)


def off_or_section(value: Any) -> Any:
    """YAML ``off``/``null`` -> ``None`` (single fidelity); ``on`` -> the defaults."""
    if value is False or value is None:
        return None
    return {} if value is True else value


CheapProtocol = Annotated[FidelityConfig | None, BeforeValidator(off_or_section)]
"""``search.fidelity``: a :class:`FidelityConfig`, or ``None`` for a single-fidelity search."""


def check_fidelity(config: StudyConfig) -> None:
    """Raise ``ValueError`` (one line) when ``search.fidelity`` does not fit the study."""
    cheap, evaluation = config.search.fidelity, config.evaluation
    if cheap is None:
        return
    if cheap.seeds > len(evaluation.seeds):
        raise ValueError(
            f"`search.fidelity.seeds` ({cheap.seeds}) must be at most the number of "
            f"`evaluation.seeds` ({len(evaluation.seeds)}); lower it"
        )
    samples = evaluation.num_samples if cheap.num_samples is None else cheap.num_samples
    if samples > evaluation.num_samples:
        raise ValueError(
            f"`search.fidelity.num_samples` ({samples}) must be at most "
            f"`evaluation.num_samples` ({evaluation.num_samples}); lower it"
        )
    steps = config.search.finetune_steps if cheap.finetune_steps is None else cheap.finetune_steps
    if steps > config.search.finetune_steps:
        raise ValueError(
            f"`search.fidelity.finetune_steps` ({steps}) must be at most "
            f"`search.finetune_steps` ({config.search.finetune_steps}); lower it"
        )
    if (cheap.seeds, samples, steps) == (
        len(evaluation.seeds),
        evaluation.num_samples,
        config.search.finetune_steps,
    ):
        raise ValueError(
            "`search.fidelity` is the full protocol itself; use fewer seeds, samples or "
            "fine-tune steps, or set `fidelity: off`"
        )


def cheap_config(config: StudyConfig) -> StudyConfig:
    """``config`` with its evaluation and fine-tune replaced by the cheap protocol.

    The reference statistics stay those of the same real split (they depend only on the
    real images and the feature network, :func:`gansearch.evaluate.prepare_scorer`).
    """
    cheap = config.search.fidelity
    if cheap is None:
        raise ValueError("the study has no `search.fidelity` section")
    evaluation = config.evaluation
    samples = evaluation.num_samples if cheap.num_samples is None else cheap.num_samples
    steps = config.search.finetune_steps if cheap.finetune_steps is None else cheap.finetune_steps
    return config.model_copy(
        update={
            "evaluation": evaluation.model_copy(
                update={
                    "seeds": evaluation.seeds[: cheap.seeds],
                    "num_samples": samples,
                    "kid_subset_size": min(evaluation.kid_subset_size, samples),
                }
            ),
            "search": config.search.model_copy(update={"finetune_steps": steps}),
        }
    )


def noise_scale(config: StudyConfig) -> float:
    """How much noisier the cheap mean of a quality metric is than the full one.

    A mean over ``k`` seeds of ``M`` images has a standard error about
    ``sqrt(n / k) * sqrt(N / M)`` times that of the full protocol's mean over ``n`` seeds
    of ``N`` images (seeds are independent; the variance of a sample statistic such as FID
    falls roughly as ``1 / M``, Chong and Forsyth, Effectively Unbiased FID, CVPR 2020).
    """
    cheap, evaluation = config.search.fidelity, config.evaluation
    if cheap is None:
        return 1.0
    samples = evaluation.num_samples if cheap.num_samples is None else cheap.num_samples
    return math.sqrt(len(evaluation.seeds) / cheap.seeds) * math.sqrt(
        evaluation.num_samples / samples
    )


@dataclass(frozen=True)
class Measured:
    """Metrics and their spread (std over evaluation seeds; latency: IQR)."""

    metrics: Mapping[str, float | None]
    spread: Mapping[str, float | None]


@dataclass(frozen=True)
class Promotion:
    """Whether a cheaply scored candidate is scored at full fidelity, and why (or why not)."""

    promote: bool
    reason: str


def _number(mapping: Mapping[str, float | None], name: str, default: float = 0.0) -> float:
    value = mapping.get(name)
    return default if value is None or not math.isfinite(value) else float(value)


def calibrate(
    cheap: Mapping[str, float | None],
    teacher_full: Mapping[str, float | None],
    teacher_cheap: Mapping[str, float | None],
) -> dict[str, float]:
    """Cheap metrics in the full protocol's scale: each quality metric shifted by the
    teacher's own difference between the protocols (cost metrics are the same at both)."""
    return {
        name: _number(cheap, name, math.nan)
        + (
            _number(teacher_full, name) - _number(teacher_cheap, name)
            if METRICS[name].kind == "quality"
            else 0.0
        )
        for name in cheap
        if name in METRICS
    }


def promotion(
    cheap: Measured,
    *,
    teacher_full: Measured,
    teacher_cheap: Mapping[str, float | None],
    scale: float,
    objectives: Sequence[str],
    constraints: Sequence[Constraint] = (),
    front: Sequence[Measured] = (),
) -> Promotion:
    """Decide whether a cheaply scored candidate goes on to the full protocol.

    The rule, all in the full protocol's units:

    1. **Calibration** (:func:`calibrate`). A cheap quality value is shifted by the
       teacher's own difference between the protocols, ``teacher_full - teacher_cheap``
       (FID over fewer images is biased upwards; the teacher shows by how much). Cost
       metrics are the same at both.
    2. **Noise floor.** For a quality metric, the largest spread over evaluation seeds
       known (the teacher's at full fidelity, the candidate's own when the cheap protocol
       has two or more seeds, and for a comparison the front point's) times ``scale``
       (:func:`noise_scale`): the spread is the noise of one seed, and the cheap mean has
       ``scale`` times the full mean's standard error, so this errs towards promoting.
       A cost metric's floor is its own spread (latency's IQR); exact counts
       (``stored_bytes``, ``macs``, ``params``, ``bitops``) have none.
    3. **Dropped** when (a) some constraint is violated by more than the floor of its
       metric, or (b) some full-fidelity feasible front point is better than the
       candidate by more than the floor in every noisy objective and no worse in every
       exact one. Everything else, including every candidate of an empty front that is
       feasible within noise, is promoted.

    Args:
        cheap: the candidate's metrics under the cheap protocol.
        teacher_full: the teacher's metrics and spread under the full protocol.
        teacher_cheap: the teacher's metrics under the cheap protocol.
        scale: see :func:`noise_scale`.
        objectives: the study's objectives, in order.
        constraints: the study's constraints.
        front: the metrics and spread of the full-fidelity feasible front's points.
    """
    values = calibrate(cheap.metrics, teacher_full.metrics, teacher_cheap)

    def floor(name: str, other: Measured | None = None) -> float:
        sources = [cheap.spread] + ([other.spread] if other is not None else [])
        own = max(_number(s, name) for s in sources)
        if METRICS[name].kind != "quality":
            return own
        return max(own, _number(teacher_full.spread, name)) * scale

    for constraint in constraints:
        value = values.get(constraint.metric, math.nan)
        limit = constraint.threshold({k: _number(teacher_full.metrics, k) for k in METRICS})
        excess = value - limit if constraint.op == "<=" else limit - value
        if not math.isfinite(excess) or excess > floor(constraint.metric):
            return Promotion(False, f"violates `{constraint}` beyond the noise floor")
    for number, point in enumerate(front):
        if _dominates_beyond_noise(point, values, objectives, lambda n, p=point: floor(n, p)):
            return Promotion(False, f"dominated beyond noise by front point {number}")
    return Promotion(True, "could enter the front" if front else "the front is empty")


def _dominates_beyond_noise(
    point: Measured, values: Mapping[str, float], objectives: Sequence[str], floor: Any
) -> bool:
    """Whether ``point`` beats ``values`` by more than the floor in every noisy objective
    and is no worse in every exact one (strictly better in one when all are exact)."""
    strictly = False
    for name in objectives:
        sign = -METRICS[name].sign  # a loss: smaller is better
        ours = sign * values.get(name, math.nan)
        theirs = sign * _number(point.metrics, name, math.nan)
        if not (math.isfinite(ours) and math.isfinite(theirs)):
            return False
        margin = floor(name)
        if margin > 0:
            if not theirs + margin < ours:
                return False
            strictly = True
        elif theirs > ours:
            return False
        elif theirs < ours:
            strictly = True
    return strictly


def is_full_fidelity(user_attrs: Mapping[str, Any]) -> bool:
    """Whether a trial's values are full-fidelity (trials without the attribute are)."""
    return user_attrs.get(FIDELITY_ATTR, FULL) == FULL
