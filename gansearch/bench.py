"""Benchmarks that report ratios measured side by side in one run (never timed tests)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _median_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Time each function ``repeats`` times, interleaved so drifts hit every side alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_evaluate(study: str | Path, *, repeats: int = 3) -> dict[str, object]:
    """Time scoring the teacher against the bare forward passes that scoring needs.

    The bare side runs exactly the forward passes the scorer runs: the generator and the
    feature network over every evaluation seed's latents, the latency protocol's warm-up
    and timed runs at its thread count, and the two counting passes (MACs, BitOps). The
    difference is the metrics' own cost: FID/KID/IS arithmetic, thop's bookkeeping,
    parameter and stored-byte walks.
    """
    from gansearch.benchmarks import load_benchmark
    from gansearch.config import load_study
    from gansearch.evaluate import prepare_scorer
    from gansearch.evaluators.cost import num_threads
    from gansearch.evaluators.scorer import generate

    config = load_study(study)
    benchmark = load_benchmark(config)
    start = time.perf_counter()
    scorer = prepare_scorer(benchmark, config, teacher_fidelity=False)
    prepare_s = time.perf_counter() - start
    teacher = benchmark.teacher.eval()
    features = benchmark.features
    protocol = scorer.protocol

    def bare_forwards() -> None:
        with torch.inference_mode():
            for seed in protocol.seeds:
                images = generate(teacher, scorer.latents[seed], protocol.batch_size)
                if features is not None:
                    for chunk in images.split(protocol.batch_size):
                        features(chunk)
            example = scorer.example_input()
            with num_threads(protocol.latency_threads):
                for _ in range(protocol.latency_warmup + protocol.latency_runs):
                    teacher(example)
            for _ in range(2):  # the MACs and BitOps counting passes
                teacher(example)

    timings = _median_seconds(
        {"score": lambda: scorer.score(teacher), "forward": bare_forwards}, repeats
    )
    return {
        "study": config.name,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "prepare_s": prepare_s,
        "score_s": timings["score"],
        "forward_s": timings["forward"],
        "overhead_ratio": timings["score"] / timings["forward"],
    }


# ---------------------------------------------------------------------------------------
# bench transforms: do fewer MACs make a faster generator?
# ---------------------------------------------------------------------------------------

TRANSFORM_KEEP_RATIOS = (1.0, 0.75, 0.5, 0.25)
TRANSFORM_RANK_FRACTIONS = (0.5, 0.25)
TRANSFORM_LOW_RANK_LAYERS = ("net.3", "net.6")  # the two big ConvTranspose2d of the DCGAN
TRANSFORM_BATCH_SIZES = (1, 64)


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
    importance = channel_importance(teacher, structure)

    def low_rank(fraction: float, masks: dict) -> dict[str, LayerPlan]:
        kept = {g.name: sum(masks.get(g.name, (True,) * g.num_channels)) for g in structure.groups}
        return {
            name: LayerPlan(
                rank=max(1, round(fraction * structure.full_rank_after_pruning(name, kept)))
            )
            for name in TRANSFORM_LOW_RANK_LAYERS
        }

    plans: list[tuple[str, str, object]] = []
    for ratio in TRANSFORM_KEEP_RATIOS:
        masks = magnitude_masks(structure, importance, ratio)
        plans.append((f"prune keep {ratio:.0%}", "prune", CompressionPlan(masks=masks)))
    for fraction in TRANSFORM_RANK_FRACTIONS:
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
    :data:`TRANSFORM_BATCH_SIZES`. Latency is ``measure_latency`` (median of ``runs``
    calls after ``warmup``) at ``threads`` intra-op threads, repeated ``rounds`` times
    with all models interleaved in every round (the order rotates each round), and the
    median over rounds is reported. Every model runs with plain float weights: encoded
    weights are baked in (:func:`~gansearch.compress.export.dequantized_copy`), so a
    quantised plan's latency is that of float kernels - its numerics are simulated, and
    only its stored bytes shrink. ``efficiency = latency_ratio / macs_ratio`` (1.0 means
    the speed-up is the full MACs reduction).
    """
    from gansearch.checkpoints import load_weights
    from gansearch.compress import CompressionPlan, apply_plan, describe
    from gansearch.compress.export import dequantized_copy
    from gansearch.evaluators.cost import count_macs, measure_latency
    from gansearch.zoo.models import DCGANGenerator
    from gansearch.zoo.weights_io import weights_dir

    file = Path(weights) if weights is not None else weights_dir("digits") / "generator.safetensors"
    teacher = load_weights(
        DCGANGenerator(), file, hint="run `gansearch zoo train digits-dcgan`"
    ).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {
        batch: torch.randn((batch, teacher.latent_dim, 1, 1), generator=generator)
        for batch in TRANSFORM_BATCH_SIZES
    }
    one = inputs[1]
    structure = describe(teacher, one)
    reference = apply_plan(teacher, CompressionPlan(), one, structure=structure)

    entries = [{"name": "teacher", "kind": "teacher", "compressed": reference}]
    for name, kind, plan in _transform_plans(teacher, one):
        compressed = apply_plan(teacher, plan, one, structure=structure)
        entries.append({"name": name, "kind": kind, "compressed": compressed, "plan": plan})
    for entry in entries:
        entry["module"] = dequantized_copy(entry["compressed"].module)
        entry["macs"] = count_macs(entry["module"], one)
        entry["stored_bytes"] = entry["compressed"].stored_nbytes()

    samples: dict[int, list[list[float]]] = {
        batch: [[] for _ in entries] for batch in TRANSFORM_BATCH_SIZES
    }
    order = list(range(len(entries)))
    for round_index in range(rounds):
        rotated = order[round_index % len(order) :] + order[: round_index % len(order)]
        for batch, x in inputs.items():
            for index in rotated:
                stats = measure_latency(
                    entries[index]["module"], x, runs=runs, warmup=warmup, threads=threads
                )
                samples[batch][index].append(stats.median_ms)

    base = entries[0]
    base_ms = {batch: statistics.median(samples[batch][0]) for batch in inputs}
    rows = []
    for index, entry in enumerate(entries):
        latency = {batch: statistics.median(samples[batch][index]) for batch in inputs}
        macs_ratio = base["macs"] / entry["macs"]
        latency_ratio = {batch: base_ms[batch] / latency[batch] for batch in inputs}
        rows.append(
            {
                "name": entry["name"],
                "kind": entry["kind"],
                "macs": entry["macs"],
                "macs_ratio": macs_ratio,
                "stored_bytes": entry["stored_bytes"],
                "stored_bytes_ratio": base["stored_bytes"] / entry["stored_bytes"],
                "latency_ms": {str(b): v for b, v in latency.items()},
                "latency_ratio": {str(b): v for b, v in latency_ratio.items()},
                "efficiency": {str(b): v / macs_ratio for b, v in latency_ratio.items()},
            }
        )
    return {
        "teacher": f"digits DCGANGenerator ({file})",
        "threads": threads,
        "rounds": rounds,
        "runs_per_round": runs,
        "warmup": warmup,
        "batch_sizes": list(TRANSFORM_BATCH_SIZES),
        "note": (
            "latency: median over rounds of measure_latency medians, models interleaved; "
            "float weights everywhere (quantised plans are simulated numerics, baked to "
            "float32 for timing); efficiency = latency_ratio / macs_ratio"
        ),
        "plans": rows,
    }
