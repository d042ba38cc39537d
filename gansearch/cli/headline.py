"""``gansearch bench headline``: the whole pipeline, figures re-measured on the artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gansearch.bench.headline import REFINE_CANDIDATES
from gansearch.cli.common import JsonOpt, console, format_value, progress_bar, user_errors

VERDICT = {True: "[green]met[/green]", False: "[red]not met[/red]"}


@user_errors
def headline(
    out: Annotated[Path, typer.Option(help="New or empty folder: storage, artifact/.")],
    benchmark: Annotated[str, typer.Option(help="Bundled benchmark: digits or photos.")] = "digits",
    study: Annotated[
        Path | None, typer.Option(help="Run this study file instead of the benchmark's.")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Search budget (default: the study's search.trials).")
    ] = None,
    finetune_steps: Annotated[
        int | None,
        typer.Option(help="Export fine-tune steps (default: the study's export.finetune_steps)."),
    ] = None,
    refine: Annotated[
        int,
        typer.Option(
            help="Candidates that could enter the feasible front once distilled, distilled "
            "and re-scored before the pick (0: none)."
        ),
    ] = REFINE_CANDIDATES,
    as_json: JsonOpt = False,
) -> None:
    """Sensitivity, search, export with fine-tune; the artifact's figures beside the teacher's."""
    from gansearch.bench.headline import bench_headline

    with progress_bar("{task.fields[losses]}") as bar:
        tasks: dict[str, Any] = {}

        def on_stage(name: str) -> None:
            for task in tasks.values():
                bar.update(task, completed=1, total=1)
            tasks[name] = bar.add_task(name, total=None, losses="")

        def on_result(result: Any, trial: Any) -> None:
            done = sum(t.state.is_finished() for t in trial.study.get_trials(deepcopy=False))
            bar.update(tasks["search"], completed=done, losses=f"{done} trials")

        report = bench_headline(
            benchmark,
            out,
            study=study,
            trials=trials,
            finetune_steps=finetune_steps,
            refine_candidates=refine,
            on_stage=on_stage,
            on_result=on_result,
        )
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_headline(report)


def _print_headline(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"{report['study']}: trial {report['trial']} of {report['trials']}, "
        f"measured on {report['artifact']}"
    )
    for column in ("metric", "teacher", "artifact", "teacher / artifact"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in report["rows"]:

        def shown(value: float, spread: float | None, name: str = row["metric"]) -> str:
            text = format_value(name, value)
            return text if spread is None else f"{text} ± {spread:.2g}"

        table.add_row(
            row["metric"],
            shown(row["teacher"], row["teacher_spread"]),
            shown(row["artifact"], row["artifact_spread"]),
            "" if row["ratio"] is None else f"{row['ratio']:.1f}x",
        )
    out = console()
    out.print(table)
    for text, holds in report["constraints"].items():
        out.print(f"constraint {text}: {VERDICT[holds]}")
    goals = report["goals"]
    out.print(
        f"goal >= {goals['stored_bytes_ratio']:g}x stored bytes and >= {goals['macs_ratio']:g}x "
        f"MACs within the constraints: {VERDICT[goals['met']]}"
    )
    for row in report["refined"]:
        searched, distilled = row["searched"], row["distilled"]
        quality = report["quality_metric"]
        out.print(
            f"refined trial {row['trial']}: {quality} {searched[quality]:.4g} as searched -> "
            f"{distilled[quality]:.4g} ± {row['spread']:.2g} distilled "
            f"({'feasible' if row['feasible'] else 'infeasible'}, {row['seconds']:.0f} s)"
        )
    out.print(f"exported from the {report['exported_from']}")
    tuned = report["finetune"]
    if tuned.get("seconds") is not None:
        out.print(
            f"export fine-tune: {tuned['steps']} steps in {tuned['seconds']:.0f} s "
            f"(kept step {tuned['best_step']})"
        )
    seconds = report["seconds"]
    out.print("time: " + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()))
