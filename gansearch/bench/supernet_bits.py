"""``gansearch bench supernet --against DIR``: two supernets at the same widths and bits.

A search picks OFA widths *and* per-layer weight bits, so a supernet is judged by its
sub-generators at the bit widths the search will pick, not only in float. Each row
extracts the sub-generator of one uniform width ratio from both supernets, quantises every
layer's weights to one bit width (the artifact's own encoding), recalibrates BatchNorm
and scores it with the study's protocol; neither side is fine-tuned. Used to measure the
quantisation-aware sandwich training of :mod:`gansearch.compress.supernet_train` (APQ,
Wang et al., CVPR 2020) against a float-trained supernet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_BITS = (32, 8, 4, 3)
DEFAULT_RATIOS = (0.5, 0.375, 0.25)


def uniform_plan(structure: Any, ratio: float, bits: int) -> Any:
    """Every group at ``ratio`` of its width, every layer's weights at ``bits``."""
    from gansearch.compress.plan import CompressionPlan, LayerPlan
    from gansearch.compress.structure import width_for
    from gansearch.spaces.config import bits_spec

    return CompressionPlan(
        widths={g.name: width_for(ratio, g.num_channels) for g in structure.groups},
        layers={layer.name: LayerPlan(weight=bits_spec(bits)) for layer in structure.layers},
    )


def compare_supernets(
    study: str | Path,
    against: Path,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    bits: Sequence[int] = DEFAULT_BITS,
) -> dict[str, Any]:
    """Quality of both supernets' sub-generators at every (width ratio, bits) pair.

    Args:
        study: the study file (protocol, space; its supernet is the "current" one).
        against: the folder of the other supernet (``supernet train --out``).
        ratios: uniform width ratios; bits: uniform weight bit widths (32 = float).
    """
    from gansearch.benchmarks import load_benchmark
    from gansearch.candidates import CandidateEvaluator
    from gansearch.config import load_study
    from gansearch.errors import GansearchError
    from gansearch.evaluate import quality_metric

    config = load_study(study)
    if config.space.ofa is None:
        raise GansearchError(f"{study} has no OFA widths (`space.ofa`); pick a study that has")
    benchmark = load_benchmark(config)
    current = CandidateEvaluator(config, benchmark)
    other = CandidateEvaluator(config, benchmark, supernet_dir=Path(against))
    metric = quality_metric(config)
    teacher = current.teacher_score.values
    rows = []
    for ratio in ratios:
        for width_bits in bits:
            plan = uniform_plan(current.space.structure, ratio, width_bits)
            scores = [e.scorer.score(e.build(plan)) for e in (current, other)]
            rows.append(
                {
                    "ratio": ratio,
                    "bits": width_bits,
                    "stored_bytes_ratio": teacher["stored_bytes"]
                    / scores[0].values["stored_bytes"],
                    "macs_ratio": teacher["macs"] / scores[0].values["macs"],
                    "current": [scores[0].values[metric], scores[0].spread[metric]],
                    "against": [scores[1].values[metric], scores[1].spread[metric]],
                }
            )
    return {
        "study": config.name,
        "metric": metric,
        "teacher": [teacher[metric], current.teacher_score.spread[metric]],
        "against": str(against),
        "rows": rows,
    }
