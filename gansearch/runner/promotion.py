"""The controller's side of a multi-fidelity search: which cheap candidates go on to full.

:class:`PromotionGate` holds what :func:`gansearch.fidelity.promotion` needs besides the
candidate (the teacher at both protocols, the noise scale, the constraints) and reads
the full-fidelity feasible front from the study's storage at each decision, so that
several controllers sharing a study judge against the same front.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gansearch.candidates import CandidateEvaluator, CandidateResult
from gansearch.evaluators.objectives import Constraint
from gansearch.fidelity import Measured, Promotion, calibrate, noise_scale, promotion
from gansearch.pareto import pareto_front


class PromotionGate:
    """Decides, for each cheaply scored candidate, whether it is scored in full.

    Args:
        evaluator: the controller's evaluator (the teacher's scores at both protocols).

    Attributes:
        promoted: candidates sent on to the full protocol by this gate.
        dropped: candidates kept at low fidelity (failures are neither).
    """

    def __init__(self, evaluator: CandidateEvaluator) -> None:
        config = evaluator.config
        self.objectives = config.objectives
        self.constraint_texts = config.search.constraints
        self.constraints = tuple(Constraint.parse(text) for text in self.constraint_texts)
        self.teacher_full = Measured(
            dict(evaluator.teacher_score.values), dict(evaluator.teacher_score.spread)
        )
        self.teacher_cheap = dict(evaluator.low_fidelity()[2].values)
        self.scale = noise_scale(config)
        self.promoted = 0
        self.dropped = 0

    def decide(self, result: CandidateResult, study: Any, *, in_time: bool = True) -> Promotion:
        """Promote ``result`` (a cheap score) or not; a failure is never promoted, nor
        anything once the run is out of time (``in_time`` false)."""
        if result.failure is not None:
            return Promotion(False, "failed at low fidelity")
        if not in_time:
            self.dropped += 1
            return Promotion(False, "the run's timeout had passed")
        front = pareto_front(study, self.objectives, constraints=self.constraint_texts)
        decision = promotion(
            Measured(result.metrics, result.spread),
            teacher_full=self.teacher_full,
            teacher_cheap=self.teacher_cheap,
            scale=self.scale,
            objectives=self.objectives,
            constraints=self.constraints,
            front=[Measured(point.metrics, point.spread) for point in front],
        )
        if decision.promote:
            self.promoted += 1
        else:
            self.dropped += 1
        return decision

    def calibrated(self, result: CandidateResult) -> CandidateResult:
        """A cheap ``result`` in the full protocol's scale (:func:`gansearch.fidelity.calibrate`):
        what a trial kept at low fidelity records and tells the strategy, so that its values
        compare with full-fidelity ones. Its constraints are judged against the teacher's
        full-protocol metrics; a failure is returned as it is."""
        if result.failure is not None:
            return result
        metrics = calibrate(result.metrics, self.teacher_full.metrics, self.teacher_cheap)
        teacher = self.teacher_full.metrics
        return dataclasses.replace(
            result,
            values=tuple(metrics[name] for name in self.objectives),
            metrics=metrics,
            constraints=tuple(c.violation(metrics, teacher) for c in self.constraints),
        )
