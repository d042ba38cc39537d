"""Every metric gansearch reports, declared once with its direction.

Optuna's ``directions`` and DEAP's fitness ``weights`` are derived from these
declarations (:func:`directions`, :func:`fitness_weights`); nothing else states a
direction by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Metric:
    """A named measurement with the direction in which it improves."""

    name: str
    direction: Direction
    kind: Literal["quality", "cost"]
    unit: str
    description: str

    @property
    def sign(self) -> float:
        """+1 when larger is better, -1 when smaller is better (DEAP weight convention)."""
        return 1.0 if self.direction == "maximize" else -1.0


_ALL = (
    Metric("fid", "minimize", "quality", "", "Frechet distance between feature Gaussians"),
    Metric("kid", "minimize", "quality", "", "unbiased polynomial-kernel MMD^2 on features"),
    Metric(
        "is", "maximize", "quality", "", "Inception Score from the feature network's classifier"
    ),
    Metric("fid_inception", "minimize", "quality", "", "FID in Inception-v3 pool features"),
    Metric("teacher_l1", "minimize", "quality", "", "mean |student - teacher| on the same latents"),
    Metric("teacher_mse", "minimize", "quality", "", "mean squared error to the teacher"),
    Metric(
        "teacher_psnr", "maximize", "quality", "dB", "PSNR against the teacher (100 dB at most)"
    ),
    Metric("psnr", "maximize", "quality", "dB", "PSNR against ground truth (paired tasks)"),
    Metric("ssim", "maximize", "quality", "", "SSIM against ground truth (paired tasks)"),
    Metric("macs", "minimize", "cost", "MAC", "multiply-accumulates per sample, counted by thop"),
    Metric("params", "minimize", "cost", "", "number of parameters"),
    Metric("stored_bytes", "minimize", "cost", "B", "exact bytes of the encoded weights"),
    Metric("bitops", "minimize", "cost", "bitop", "MACs x weight bits x activation bits"),
    Metric("latency_ms", "minimize", "cost", "ms", "median CPU latency of one forward pass"),
)

METRICS: dict[str, Metric] = {metric.name: metric for metric in _ALL}

FEATURE_METRICS = ("fid", "kid", "is")
"""Measured only when the study has a feature network (a benchmark's, or ``model.features``)."""
INCEPTION_METRICS = ("fid_inception",)
"""Measured only when the study gives local Inception-v3 weights (``evaluation.inception``)."""
FIDELITY_METRICS = ("teacher_l1", "teacher_mse", "teacher_psnr")
"""Compare a candidate with the teacher itself, on the same inputs. The teacher scores the
ideal (0, 0 and :data:`PSNR_CEILING_DB`), so nothing can be relative to its value: a
constraint needs an absolute bound (:meth:`Constraint.parse`), and the Pareto front puts
these metrics on absolute scales (:mod:`gansearch.pareto`)."""
PSNR_CEILING_DB = 100.0
"""PSNR is capped at this ceiling, so identical outputs score a finite number rather than
infinity: the ``MAX_PSNR`` (100 dB) of libvpx's ``vpx_sse_to_psnr`` and libaom's
``aom_sse_to_psnr``. Any MSE below ``data_range**2 * 1e-10`` reads as the same 100 dB."""
PAIRED_METRICS = ("psnr", "ssim")
"""Need ground-truth targets: measured only on paired data (``model.inputs: paired``)."""


def measured_metrics(*, features: bool, inception: bool, paired: bool = False) -> frozenset[str]:
    """The metrics a study's scorer measures for every candidate.

    Cost metrics and the teacher-fidelity metrics are always measured; the feature metrics
    need a feature network, ``fid_inception`` needs local Inception weights, and PSNR/SSIM
    need paired ground truth.

    Args:
        features: whether the study has a feature network.
        inception: whether the study gives Inception-v3 weights.
        paired: whether the study's inputs come with ground-truth targets.
    """
    never = set() if paired else set(PAIRED_METRICS)
    if not features:
        never.update(FEATURE_METRICS)
    if not inception:
        never.update(INCEPTION_METRICS)
    return frozenset(name for name in METRICS if name not in never)


def metric(name: str) -> Metric:
    """Look a metric up by name, with an error that lists the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}") from None


def directions(names: tuple[str, ...] | list[str]) -> list[Direction]:
    """Optuna study directions for these objectives."""
    return [metric(name).direction for name in names]


def fitness_weights(names: tuple[str, ...] | list[str]) -> tuple[float, ...]:
    """DEAP fitness weights for these objectives (+1 maximise, -1 minimise)."""
    return tuple(metric(name).sign for name in names)


_UNITS = {
    "": 1.0,
    "B": 1.0,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "KB": 1024.0,
    "MB": 1024.0**2,
    "GB": 1024.0**3,
}
_IDEAL = {"teacher_l1": "0", "teacher_mse": "0", "teacher_psnr": f"{PSNR_CEILING_DB:g} dB"}
_FIDELITY_EXAMPLE = {
    "teacher_l1": "teacher_l1 <= 0.05",
    "teacher_mse": "teacher_mse <= 0.004",
    "teacher_psnr": "teacher_psnr >= 30",
}
_NUMBER = r"[0-9.eE+-]+"
_CONSTRAINT = re.compile(
    rf"^\s*(?P<metric>[a-z_][a-z0-9_]*)\s*(?P<op><=|>=)\s*"
    rf"(?:(?P<factor>{_NUMBER})\s*\*\s*teacher"
    rf"|(?P<plain>teacher)(?:\s*(?P<sign>[+-])\s*(?P<offset>{_NUMBER}))?"
    rf"|(?P<value>{_NUMBER})\s*(?P<unit>[KMG]?B?))\s*$"
)


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``, the bound absolute or relative to the teacher.

    Written in a study file as ``"fid <= 1.10 * teacher"``, ``"psnr >= teacher - 0.5"``
    (an offset from the teacher, e.g. the field's "PSNR drop of at most 0.5 dB") or
    ``"stored_bytes <= 64KB"`` (units: K/M/G = 1e3/1e6/1e9, B = bytes, KB/MB/GB =
    1024-based). The bound is ``factor * teacher + offset`` when relative. The bound must be a
    finite number, and absolute for the :data:`FIDELITY_METRICS` (``"teacher_psnr >= 30"``).
    :meth:`violation` follows Optuna's ``constraints_func`` convention: a value <= 0 means
    satisfied.
    """

    metric: str
    op: Literal["<=", ">="]
    bound: float
    relative_to_teacher: bool
    offset: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.match(text)
        if match is None:
            raise ValueError(
                f"cannot read constraint {text!r}; write e.g. 'fid <= 1.10 * teacher', "
                "'psnr >= teacher - 0.5' or 'stored_bytes <= 64KB' (units: B, K, M, G, KB, MB, "
                "GB)"
            )
        name = match["metric"]
        if name not in METRICS:
            known = ", ".join(sorted(METRICS))
            raise ValueError(f"unknown metric {name!r} in constraint {text!r}; known: {known}")
        relative = match["factor"] is not None or match["plain"] is not None
        if relative and name in FIDELITY_METRICS:
            raise ValueError(
                f"constraint {text!r} is relative to the teacher, but {name!r} compares with "
                f"the teacher itself (the teacher scores {_IDEAL[name]}); give an absolute "
                f"bound, e.g. {_FIDELITY_EXAMPLE[name]!r}"
            )
        try:
            if relative:
                bound = float(match["factor"]) if match["factor"] is not None else 1.0
                offset = float(match["offset"] or 0.0) * (-1.0 if match["sign"] == "-" else 1.0)
            else:
                bound, offset = float(match["value"]), 0.0
        except ValueError:
            raise ValueError(f"cannot read the number in constraint {text!r}") from None
        if not relative:
            bound *= _UNITS[match["unit"]]
        if not (math.isfinite(bound) and math.isfinite(offset)):
            raise ValueError(
                f"the bound of constraint {text!r} is not a finite number; write a finite one "
                "or remove the constraint"
            )
        return cls(name, match["op"], bound, relative, offset)  # type: ignore[arg-type]

    def threshold(self, teacher: Mapping[str, float]) -> float:
        if not self.relative_to_teacher:
            return self.bound
        return self.bound * teacher[self.metric] + self.offset

    def violation(self, values: Mapping[str, float], teacher: Mapping[str, float]) -> float:
        """How far ``values`` is from satisfying the constraint (<= 0: satisfied)."""
        limit = self.threshold(teacher)
        excess = values[self.metric] - limit if self.op == "<=" else limit - values[self.metric]
        return excess / abs(limit) if limit != 0 else excess

    def __str__(self) -> str:
        if not self.relative_to_teacher:
            return f"{self.metric} {self.op} {self.bound:g}"
        factor = "teacher" if self.bound == 1.0 else f"{self.bound:g} * teacher"
        offset = f" {'-' if self.offset < 0 else '+'} {abs(self.offset):g}" if self.offset else ""
        return f"{self.metric} {self.op} {factor}{offset}"
