"""``gansearch bench transforms``: do fewer MACs make a faster generator?

On the digits teacher, pruning and low rank are set against their measured CPU latency.
Which layers get low rank is derived from the teacher: the :data:`LOW_RANK_LAYER_COUNT`
factorizable layers with the most MACs.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gansearch.compress import GeneratorStructure

KEEP_RATIOS = (1.0, 0.75, 0.5, 0.25)
RANK_FRACTIONS = (0.5, 0.25)
LOW_RANK_LAYER_COUNT = 2
BATCH_SIZES = (1, 64)


def heaviest_layers(
    teacher: torch.nn.Module, structure: GeneratorStructure, example: torch.Tensor, count: int
) -> tuple[str, ...]:
    """The ``count`` factorizable layers with the most MACs per sample, in module order.

    Ties keep module order. On the digits DCGAN these are its two inner ConvTranspose2d.

    Raises:
        ValueError: if ``count`` is not in ``[1, number of factorizable layers]``.
    """
    from gansearch.evaluators.macs import layer_macs

    names = [layer.name for layer in structure.layers if layer.factorizable]
    if not 1 <= count <= len(names):
        raise ValueError(f"`1 <= count <= {len(names)}` must hold, but got ({count=}).")
    macs = layer_macs(teacher, example)
    ranked = sorted(names, key=lambda name: (-macs[name], names.index(name)))[:count]
    return tuple(sorted(ranked, key=names.index))


def _transform_plans(
    teacher: torch.nn.Module, example: torch.Tensor
) -> list[tuple[str, str, object]]:
    """(name, kind, plan) for the digits teacher: pruning, low rank, both, and int4."""
    from gansearch.compress import (
        CompressionPlan,
        LayerPlan,
        channel_importance,
        describe,
        magnitude_masks,
    )

    structure = describe(teacher, example)
    importance = channel_importance(teacher, structure, example)
    layers = heaviest_layers(teacher, structure, example, LOW_RANK_LAYER_COUNT)

    def low_rank(fraction: float, masks: dict) -> dict[str, LayerPlan]:
        kept = {g.name: sum(masks.get(g.name, (True,) * g.num_channels)) for g in structure.groups}
        return {
            name: LayerPlan(
                rank=max(1, round(fraction * structure.full_rank_after_pruning(name, kept)))
            )
            for name in layers
        }

    plans: list[tuple[str, str, object]] = []
    for ratio in KEEP_RATIOS:
        masks = magnitude_masks(structure, importance, ratio)
        plans.append((f"prune keep {ratio:.0%}", "prune", CompressionPlan(masks=masks)))
    for fraction in RANK_FRACTIONS:
        denominator = round(1 / fraction)
        plans.append(
            (
                f"low rank 1/{denominator}",
                "low-rank",
                CompressionPlan(layers=low_rank(fraction, {})),
            )
        )
    half = magnitude_masks(structure, importance, 0.5)
    plans.append(
        (
            "prune 50% + low rank 1/2",
            "prune+low-rank",
            CompressionPlan(masks=half, layers=low_rank(0.5, half)),
        )
    )
    int4 = {layer.name: LayerPlan(weight="int4") for layer in structure.layers}
    plans.append(("int4 weights (simulated)", "quant", CompressionPlan(layers=int4)))
    return plans


def _timing_entries(teacher: torch.nn.Module, one: torch.Tensor) -> tuple[list[dict], int]:
    """Every plan, the teacher first, in deployed then unfolded form; and the plan count."""
    from gansearch.compress import CompressionPlan, apply_plan, describe
    from gansearch.compress.deploy import DeploymentReport, deployment_copy, dequantized_copy
    from gansearch.evaluators.macs import count_macs

    structure = describe(teacher, one)
    reference = apply_plan(teacher, CompressionPlan(), one, structure=structure)
    plans = [{"name": "teacher", "kind": "teacher", "compressed": reference}]
    for name, kind, plan in _transform_plans(teacher, one):
        compressed = apply_plan(teacher, plan, one, structure=structure)
        plans.append({"name": name, "kind": kind, "compressed": compressed})
    entries = []  # deployed forms first (same order as plans), then unfolded forms
    for folded in (True, False):
        for plan_entry in plans:
            compressed = plan_entry["compressed"]
            report = DeploymentReport()
            module = (
                deployment_copy(compressed, report=report)
                if folded
                else dequantized_copy(compressed.module)
            )
            entries.append(
                {
                    "name": plan_entry["name"] + ("" if folded else " (unfolded)"),
                    "kind": plan_entry["kind"] + ("" if folded else " unfolded"),
                    "folded": folded,
                    "module": module,
                    "folded_batchnorms": [norm for norm, _ in report.folded],
                    "macs": count_macs(compressed.module, one),
                    "stored_bytes": compressed.stored_nbytes(),
                }
            )
    return entries, len(plans)


def bench_transforms(
    *,
    rounds: int = 7,
    runs: int = 30,
    warmup: int = 5,
    threads: int = 1,
    weights: str | Path | None = None,
) -> dict[str, object]:
    """Measure whether pruning and low rank turn fewer MACs into lower CPU latency.

    On the digits teacher, each plan's MACs ratio (teacher / candidate, per sample) is set
    against its measured latency ratio (teacher / candidate) at each batch size in
    :data:`BATCH_SIZES`. Every plan, the teacher included, is timed in two forms:

    * deployed (the ``plans`` rows): :func:`~gansearch.compress.deploy.deployment_copy` -
      weights dequantised, BatchNorm folded into the convolutions - against the teacher's
      own deployment form (BatchNorm folded too), so folding is no advantage of the
      candidates; ``latency_ratio_vs_unfolded_teacher`` adds the ratio against the
      unfolded teacher;
    * unfolded (the ``(unfolded)`` rows): weights dequantised only
      (:func:`~gansearch.compress.deploy.dequantized_copy`), against the unfolded teacher.

    Latency is ``measure_latency`` (median of ``runs`` calls after ``warmup``) at
    ``threads`` intra-op threads, repeated ``rounds`` times with all models of both forms
    interleaved in every round (the order rotates each round), and the median over rounds
    is reported. Weights are plain floats: a quantised plan's latency is that of float
    kernels - its numerics are simulated, and only its stored bytes shrink. MACs are
    counted on the simulated model (BatchNorm counts zero either way).
    ``efficiency = latency_ratio / macs_ratio`` (1.0 means the speed-up is the full MACs
    reduction).
    """
    from gansearch.checkpoints import load_weights
    from gansearch.evaluators.cost import measure_latency
    from gansearch.zoo.models import DCGANGenerator
    from gansearch.zoo.weights_io import weights_dir

    file = Path(weights) if weights is not None else weights_dir("digits") / "generator.safetensors"
    teacher = load_weights(
        DCGANGenerator(), file, hint="run `gansearch zoo train digits-dcgan`"
    ).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {
        batch: torch.randn((batch, teacher.latent_dim, 1, 1), generator=generator)
        for batch in BATCH_SIZES
    }
    entries, plan_count = _timing_entries(teacher, inputs[1])

    samples: dict[int, list[list[float]]] = {batch: [[] for _ in entries] for batch in BATCH_SIZES}
    order = list(range(len(entries)))
    for round_index in range(rounds):
        rotated = order[round_index % len(order) :] + order[: round_index % len(order)]
        for batch, x in inputs.items():
            for index in rotated:
                stats = measure_latency(
                    entries[index]["module"], x, runs=runs, warmup=warmup, threads=threads
                )
                samples[batch][index].append(stats.median_ms)

    latencies = [
        {batch: statistics.median(samples[batch][index]) for batch in inputs}
        for index in range(len(entries))
    ]
    folded_teacher, unfolded_teacher = 0, plan_count
    rows = []
    for index, entry in enumerate(entries):
        base_index = folded_teacher if entry["folded"] else unfolded_teacher
        base = entries[base_index]
        latency = latencies[index]
        macs_ratio = base["macs"] / entry["macs"]
        latency_ratio = {batch: latencies[base_index][batch] / latency[batch] for batch in inputs}
        row = {
            "name": entry["name"],
            "kind": entry["kind"],
            "folded_batchnorms": entry["folded_batchnorms"],
            "macs": entry["macs"],
            "macs_ratio": macs_ratio,
            "stored_bytes": entry["stored_bytes"],
            "stored_bytes_ratio": base["stored_bytes"] / entry["stored_bytes"],
            "latency_ms": {str(b): v for b, v in latency.items()},
            "latency_ratio": {str(b): v for b, v in latency_ratio.items()},
            "efficiency": {str(b): v / macs_ratio for b, v in latency_ratio.items()},
        }
        if entry["folded"]:
            row["latency_ratio_vs_unfolded_teacher"] = {
                str(b): latencies[unfolded_teacher][b] / latency[b] for b in inputs
            }
        rows.append(row)
    return {
        "teacher": f"digits DCGANGenerator ({file})",
        "threads": threads,
        "rounds": rounds,
        "runs_per_round": runs,
        "warmup": warmup,
        "batch_sizes": list(BATCH_SIZES),
        "note": (
            "latency: median over rounds of measure_latency medians, all models interleaved; "
            "rows without '(unfolded)' are deployment forms (BatchNorm folded) against the "
            "folded teacher, '(unfolded)' rows are dequantised-only forms against the unfolded "
            "teacher; float weights everywhere (quantised plans are simulated numerics, baked "
            "to float32 for timing); efficiency = latency_ratio / macs_ratio"
        ),
        "plans": rows,
    }
