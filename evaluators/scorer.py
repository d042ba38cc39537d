"""The multi-objective scorer: every quality and cost metric of one generator.

A :class:`Scorer` is prepared once per process (generator inputs, ground-truth targets,
reference features, teacher outputs, feature network) and then scores any number of
candidate generators under the same fixed protocol. Quality metrics are computed once
per evaluation seed and reported as mean and spread (the noise floor); cost metrics are
deterministic except latency, which reports its own inter-quartile range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gansearch.compress.batches import Inputs, as_inputs, chunks
from gansearch.evaluators import cost, fidelity, macs, quality
from gansearch.evaluators.objectives import METRICS
from gansearch.evaluators.reference_cache import ReferenceFeatures

Embedder = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Score:
    """All metrics of one generator.

    Attributes:
        values: metric name -> value (the mean over evaluation seeds for quality).
        spread: metric name -> noise floor (std over seeds; latency: IQR in ms).
        per_seed: quality metric name -> the value at each evaluation seed.
    """

    values: Mapping[str, float]
    spread: Mapping[str, float] = field(default_factory=dict)
    per_seed: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def objectives(self, names: tuple[str, ...] | list[str]) -> tuple[float, ...]:
        missing = [name for name in names if name not in self.values]
        if missing:
            raise KeyError(
                f"objective {missing[0]!r} was not measured; measured: {sorted(self.values)}"
            )
        return tuple(self.values[name] for name in names)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: metrics with direction and noise floor; non-finite values become null."""

        def finite(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {
            name: {
                "value": finite(value),
                "spread": finite(self.spread[name]) if name in self.spread else None,
                "direction": METRICS[name].direction,
                "unit": METRICS[name].unit,
                **(
                    {"per_seed": [finite(v) for v in self.per_seed[name]]}
                    if name in self.per_seed
                    else {}
                ),
            }
            for name, value in self.values.items()
        }


@dataclass(frozen=True)
class ScoringProtocol:
    """The numbers that fix how a score is computed (from the study's ``evaluation``)."""

    seeds: tuple[int, ...]
    batch_size: int
    kid_subsets: int
    kid_subset_size: int
    latency_runs: int
    latency_warmup: int
    latency_threads: int
    latency_batch_size: int
    data_range: float = 2.0


def generate(generator: nn.Module, inputs: torch.Tensor | Inputs, batch_size: int) -> torch.Tensor:
    """Run ``generator(*inputs)`` in batches of ``batch_size``, in inference mode."""
    with torch.inference_mode():
        return torch.cat([generator(*chunk) for chunk in chunks(as_inputs(inputs), batch_size)])


class Scorer:
    """Scores generators on fixed inputs against references, targets and teacher outputs.

    Args:
        protocol: the fixed evaluation protocol.
        inputs: evaluation seed -> generator inputs, a tensor or a tuple of tensors (the
            same for every candidate).
        embed: images -> (features, logits) of the feature network, or ``None``.
        reference: features of the real reference images, or ``None``.
        teacher_outputs: evaluation seed -> teacher images on the same inputs, or
            ``None`` to skip the teacher-fidelity metrics.
        inception: optional Inception-v3 embedder and its reference features.
        targets: evaluation seed -> ground truth for each input (paired tasks), for PSNR
            and SSIM, or ``None``.
    """

    def __init__(
        self,
        protocol: ScoringProtocol,
        inputs: Mapping[int, torch.Tensor | Inputs],
        embed: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None,
        reference: ReferenceFeatures | None,
        teacher_outputs: Mapping[int, torch.Tensor] | None = None,
        inception: tuple[Embedder, ReferenceFeatures] | None = None,
        targets: Mapping[int, torch.Tensor] | None = None,
    ) -> None:
        if (embed is None) != (reference is None):
            raise ValueError("`embed` and `reference` must be given together.")
        for name, table in (("inputs", inputs), ("targets", targets)):
            missing = [seed for seed in protocol.seeds if table is not None and seed not in table]
            if missing:
                raise ValueError(f"`{name}` must cover every protocol seed, but misses {missing}.")
        self.protocol = protocol
        self.inputs = {seed: as_inputs(batch) for seed, batch in inputs.items()}
        self.targets = dict(targets) if targets is not None else None
        self.embed = embed
        self.reference = reference
        self.teacher_outputs = dict(teacher_outputs) if teacher_outputs is not None else None
        self.inception = inception
        self._reference_kernel = (
            quality.polynomial_kernel(*[reference.features.double().numpy()] * 2)
            if reference is not None
            else None
        )

    def example_input(self) -> Inputs:
        """The batch the cost metrics are measured on (latency batch size)."""
        first = self.inputs[self.protocol.seeds[0]]
        return tuple(part[: self.protocol.latency_batch_size] for part in first)

    def quality(self, generator: nn.Module) -> tuple[dict[str, list[float]], int]:
        """Quality metrics at each evaluation seed, and the number of images generated."""
        per_seed: dict[str, list[float]] = {}
        generated = 0
        for seed in self.protocol.seeds:
            images = generate(generator, self.inputs[seed], self.protocol.batch_size)
            generated += images.shape[0]
            if not torch.isfinite(images).all():
                raise FloatingPointError(f"the generator produced non-finite images (seed {seed})")
            for name, value in self._quality_at(images, seed).items():
                per_seed.setdefault(name, []).append(value)
        return per_seed, generated

    def _quality_at(self, images: torch.Tensor, seed: int) -> dict[str, float]:
        values: dict[str, float] = {}
        if self.embed is not None and self.reference is not None:
            with torch.inference_mode():
                pieces = [self.embed(chunk) for chunk in images.split(self.protocol.batch_size)]
            features = torch.cat([p[0] for p in pieces]).float().cpu()
            logits = torch.cat([p[1] for p in pieces]).float().cpu()
            values["fid"] = quality.frechet_distance(
                quality.gaussian_stats(features), self.reference.stats
            )
            values["kid"] = quality.kid(
                features,
                self.reference.features,
                subsets=self.protocol.kid_subsets,
                subset_size=self.protocol.kid_subset_size,
                generator=np.random.default_rng(seed),
                kernel_bb=self._reference_kernel,
            )[0]
            values["is"] = quality.inception_score(logits)[0]
        if self.inception is not None:
            embed_inception, reference = self.inception
            with torch.inference_mode():
                features = embed_inception(images).float().cpu()
            values["fid_inception"] = quality.frechet_distance(
                quality.gaussian_stats(features), reference.stats
            )
        if self.targets is not None:
            target = self.targets[seed].cpu()
            values["psnr"] = fidelity.psnr(
                images.cpu(), target, data_range=self.protocol.data_range
            )
            side = min(images.shape[-2:])  # SSIM's 7x7 window, smaller for tiny images
            values["ssim"] = fidelity.ssim(
                images.cpu(),
                target,
                data_range=self.protocol.data_range,
                window_size=min(7, side if side % 2 else side - 1),
            )
        if self.teacher_outputs is not None:
            values.update(
                fidelity.teacher_fidelity(
                    images.cpu(),
                    self.teacher_outputs[seed].cpu(),
                    data_range=self.protocol.data_range,
                )
            )
        return values

    def cost(self, generator: nn.Module) -> tuple[dict[str, float], dict[str, float]]:
        """Cost metrics per sample, and the latency spread (IQR).

        Latency is timed on ``generator.deployment_module()`` when the generator has that
        method (e.g. a compressed generator, whose deployment form has its weights baked
        and BatchNorm folded); the other metrics are counted on ``generator`` itself.
        """
        example = self.example_input()
        deployment_module = getattr(generator, "deployment_module", None)
        timed = deployment_module() if callable(deployment_module) else generator
        latency = cost.measure_latency(
            timed,
            example,
            runs=self.protocol.latency_runs,
            warmup=self.protocol.latency_warmup,
            threads=self.protocol.latency_threads,
        )
        values = {
            "macs": float(macs.count_macs(generator, example)),
            "params": float(cost.count_params(generator)),
            "stored_bytes": float(cost.stored_bytes(generator)),
            "bitops": float(cost.bitops(generator, example)),
            "latency_ms": latency.median_ms,
        }
        return values, {"latency_ms": latency.iqr_ms}

    def score(self, generator: nn.Module) -> Score:
        """Every quality and cost metric of ``generator`` (which is put in eval mode).

        Parametrised weights (e.g. fake-quantised ones) are computed once per call under
        ``torch.nn.utils.parametrize.cached()``, as a deployed, dequantised model would hold
        them, instead of once per forward pass.
        """
        from torch.nn.utils import parametrize

        generator.eval()
        with parametrize.cached():
            return self._score(generator)

    def _score(self, generator: nn.Module) -> Score:
        per_seed, _ = self.quality(generator)
        values: dict[str, float] = {}
        spread: dict[str, float] = {}
        for name, seeds in per_seed.items():
            summary = quality.summarize(seeds)
            values[name], spread[name] = summary.mean, summary.std
        cost_values, cost_spread = self.cost(generator)
        values.update(cost_values)
        spread.update(cost_spread)
        return Score(values, spread, {name: tuple(v) for name, v in per_seed.items()})
