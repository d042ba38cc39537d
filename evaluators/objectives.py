"""Every metric gansearch reports, declared once with its direction.

Optuna's ``directions`` and DEAP's fitness ``weights`` are derived from these
declarations (:func:`directions`, :func:`fitness_weights`); nothing else states a
direction by hand.
"""

from __future__ import annotations

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
    Metric("teacher_psnr", "maximize", "quality", "dB", "PSNR of the student against the teacher"),
    Metric("psnr", "maximize", "quality", "dB", "PSNR against ground truth (paired tasks)"),
    Metric("ssim", "maximize", "quality", "", "SSIM against ground truth (paired tasks)"),
    Metric("macs", "minimize", "cost", "MAC", "multiply-accumulates per sample, counted by thop"),
    Metric("params", "minimize", "cost", "", "number of parameters"),
    Metric("stored_bytes", "minimize", "cost", "B", "exact bytes of the encoded weights"),
    Metric("bitops", "minimize", "cost", "bitop", "MACs x weight bits x activation bits"),
    Metric("latency_ms", "minimize", "cost", "ms", "median CPU latency of one forward pass"),
)

METRICS: dict[str, Metric] = {metric.name: metric for metric in _ALL}


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
