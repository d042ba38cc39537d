"""``gansearch evaluate``: score a study's teacher, or an exported artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gansearch.cli.common import JsonOpt, StudyArg, print_score_table, user_errors


@user_errors
def evaluate(
    study: StudyArg,
    as_json: JsonOpt = False,
    artifact: Annotated[
        Path | None, typer.Option(help="Score an exported artifact folder instead of the teacher.")
    ] = None,
    trust_factory: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-factory",
            help="A 'package.module:Callable' the artifact may name to rebuild its teacher "
            "(repeatable). Zoo generators and the study's own model.generator are trusted.",
        ),
    ] = None,
) -> None:
    """Score the study's teacher (or an artifact): quality with noise floor, and cost."""
    from gansearch.benchmarks import load_benchmark
    from gansearch.config import load_study
    from gansearch.evaluate import evaluate_artifact, evaluate_teacher

    config = load_study(study)
    benchmark = load_benchmark(config)
    if artifact is None:
        score = evaluate_teacher(benchmark, config)
    else:
        score = evaluate_artifact(benchmark, config, artifact, trust=trust_factory or ())
    what = "teacher" if artifact is None else str(artifact)
    metrics = score.to_dict()
    if as_json:
        payload = {
            "study": config.name,
            "benchmark": benchmark.name,
            "model": what,
            "protocol": json.loads(config.evaluation.model_dump_json()),
            "metrics": metrics,
        }
        print(json.dumps(payload, indent=2))
    else:
        seeds = ", ".join(map(str, config.evaluation.seeds))
        print_score_table(
            f"{config.name}: {what} ({config.evaluation.num_samples} samples x seeds {seeds})",
            metrics,
        )
