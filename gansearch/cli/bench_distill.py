"""``gansearch bench distill``: fixed plans fine-tuned for 0..N steps, table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gansearch.cli.common import JsonOpt, console, named_progress, progress_bar, user_errors


def _steps(text: str) -> tuple[int, ...]:
    from gansearch.errors import GansearchError

    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        steps = ()
    if not steps or any(s < 0 for s in steps):
        raise GansearchError(
            f"`--steps` must be comma-separated non-negative integers, e.g. 0,30,200; got {text!r}"
        )
    return steps


@user_errors
def distill(
    benchmark: Annotated[
        str, typer.Option(help="Bundled benchmark (digits or photos) or a study file.")
    ] = "digits",
    steps: Annotated[
        str, typer.Option(help="Comma-separated fine-tune step counts; 0 = not fine-tuned.")
    ] = "0,30,200,1000",
    plan: Annotated[
        list[str] | None,
        typer.Option("--plan", help="Plan to bench (repeatable; default: the bench's set)."),
    ] = None,
    before: Annotated[
        bool, typer.Option(help="Also run the pre-fix recipe at the largest step count.")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Does fine-tuning improve fixed plans? Quality by step count, beside the pre-fix recipe."""
    from gansearch.bench.distill import bench_distill

    counts = _steps(steps)
    recipes = ("study", "before") if before else ("study",)
    with progress_bar() as bar:
        report = bench_distill(
            benchmark,
            steps=counts,
            plans=plan,
            recipes=recipes,
            out=out,
            on_run=named_progress(bar),
        )
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print_distill(report)


def print_distill(report: dict[str, Any]) -> None:
    """The report as a table: one row per plan, one quality column per step count."""
    from rich.table import Table

    metric, steps = report["metric"], report["steps"]
    teacher = report["teacher"]
    table = Table(
        title=f"bench distill: {report['study']}, {metric} ({report['direction']}; mean ± std "
        f"over seeds {report['seeds']}, {report['num_samples']} samples); teacher "
        f"{teacher['quality']:.4g} ± {teacher['spread']:.2g}"
    )
    table.add_column("plan")
    tuned = "/".join(f"@{s}" for s in steps if s > 0)
    for column in ("bytes x", "MACs x", *(f"{metric} @{s}" for s in steps), f"seconds {tuned}"):
        table.add_column(column, justify="right")
    has_before = any(r["recipe"] == "before" for row in report["plans"] for r in row["runs"])
    if has_before:
        table.add_column(f"before @{steps[-1]}", justify="right")

    def cell(run: dict[str, Any]) -> str:
        kept = f" (kept {run['best_step']})" if 0 < run["best_step"] < run["steps"] else ""
        kept = " (kept 0)" if run["steps"] > 0 and run["best_step"] == 0 else kept
        return f"{run['quality']:.4g} ± {run['spread']:.2g}{kept}"

    for row in report["plans"]:
        study = {r["steps"]: r for r in row["runs"] if r["recipe"] == "study"}
        seconds = "/".join(f"{study[s]['seconds']:.0f}" for s in steps if s in study and s > 0)
        cells = [row["name"], f"{row['stored_bytes_ratio']:.1f}", f"{row['macs_ratio']:.1f}"]
        cells += [cell(study[s]) if s in study else "" for s in steps]
        cells.append(seconds)
        if has_before:
            before = [r for r in row["runs"] if r["recipe"] == "before"]
            cells.append(f"{cell(before[0])}, {before[0]['seconds']:.0f} s" if before else "")
        table.add_row(*cells)
    console().print(table)
    console().print(
        "study: the study's `distill:` recipe, state kept by held-out "
        f"{metric}; before: no adversarial term, state kept by teacher L1. "
        "(kept N): the state of step N was returned."
    )
