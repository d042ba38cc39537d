"""``gansearch bench evaluate``: what scoring costs beyond the forward passes it needs."""

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
    parameter and stored-byte walks. The goal for the ratio is
    :attr:`~gansearch.bench.goals.Goals.scoring_overhead`.
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
                images = generate(teacher, scorer.inputs[seed], protocol.batch_size)
                if features is not None:
                    for chunk in images.split(protocol.batch_size):
                        features(chunk)
            example = scorer.example_input()
            with num_threads(protocol.latency_threads):
                for _ in range(protocol.latency_warmup + protocol.latency_runs):
                    teacher(*example)
            for _ in range(2):  # the MACs and BitOps counting passes
                teacher(*example)

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
