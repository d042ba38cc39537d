"""Distillation-aware refinement: the top rung of a search, scored after distillation.

A search scores candidates as the plan leaves them (or after a short fine-tune), but what
is exported is distilled for ``export.finetune_steps`` steps, and distillation moves
quality a lot: on digits the quarter-width int4 sub-generator (59.9x fewer bytes, 14.6x
fewer MACs) scores FID 153.8 as searched, outside the study's bar of 128.05, and 108.3
after 2000 steps of quantisation-aware distillation. A constraint judged before
distillation hides exactly the candidates the field's compression ratios come from.

So, as the top rung of successive halving (Jamieson & Talwalkar, AISTATS 2016; Li et al.,
Hyperband, JMLR 2018) with the search as the cheap rung, :func:`refine` distils the few
candidates that could still enter the feasible front *after* distillation and scores
them on the study's full protocol. The promotion rule is Pareto-aware and stated:

* the candidate is on the *unconstrained* front of the search's complete, full-fidelity
  trials (no other trial is at least as good in every objective);
* it is more compressed (larger product of teacher / candidate over the cost objectives,
  :func:`gansearch.pareto.compression`) than the feasible front's most compressed
  point, so that it could replace it;
* its quality is inside the hypervolume reference point (at most 2x the teacher's FID;
  :func:`gansearch.pareto.reference_point`), beyond which a point adds nothing to the
  front and distillation is not expected to bring it back;
* the ``k`` most compressed of these are distilled.

The constraint is never loosened: a refined candidate counts only if it meets the
study's constraints on the full protocol after distillation, and the artifact exported
from it is measured again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gansearch.evaluators.objectives import METRICS
from gansearch.pareto import (
    FrontPoint,
    compression,
    pareto_front,
    reference_point,
    relative_losses,
)


def refinement_candidates(
    study: Any, objectives: Sequence[str], constraints: Sequence[str], k: int
) -> list[FrontPoint]:
    """The up to ``k`` trials :func:`refine` distils (promotion rule: module docstring)."""
    teacher = study.user_attrs.get("teacher_metrics") or {}
    feasible = pareto_front(study, objectives, constraints=constraints)
    floor = max((compression(p, objectives, teacher) for p in feasible), default=-math.inf)
    reference = reference_point(objectives)
    quality = np.array([METRICS[name].kind == "quality" for name in objectives])
    chosen = []
    for point in pareto_front(study, objectives, constraints=()):
        inside = relative_losses(point.values, objectives, teacher) < reference
        if compression(point, objectives, teacher) > floor and bool(np.all(inside[quality])):
            chosen.append(point)
    chosen.sort(key=lambda p: compression(p, objectives, teacher), reverse=True)
    return chosen[:k]


@dataclass(frozen=True)
class Refined:
    """One distilled candidate: its trial, the model, its full-protocol score, feasibility."""

    trial: int
    compressed: Any
    distilled: Any
    score: Any
    feasible: bool
    seconds: float


def refine(evaluator: Any, candidates: Sequence[FrontPoint], steps: int) -> list[Refined]:
    """Distil each candidate for ``steps`` steps and score it on the full protocol.

    The distillation is :meth:`~gansearch.candidates.CandidateEvaluator.finetune` (the
    study's recipe, best held-out state), the same as export's, and deterministic, so
    exporting a refined trial with the same steps reproduces its model.
    """
    refined = []
    for point in candidates:
        started = time.perf_counter()
        compressed = evaluator.compressed_from_json(point.plan_json)
        tuned, result = evaluator.finetune(compressed, steps)
        score = evaluator.scorer.score(tuned)
        feasible = all(value <= 0 for value in evaluator.constraint_values(score.values))
        refined.append(
            Refined(point.number, tuned, result, score, feasible, time.perf_counter() - started)
        )
    return refined
