"""``gansearch sensitivity``: the quality loss of every single compression choice.

It applies each value of each gene of the study's space, alone, to the teacher and scores
the result with the study's own protocol (:mod:`gansearch.sensitivity_measure`), then
prints the table, writes a heatmap PNG and lists the sensitivity-guided plans that
``search.sensitivity: true`` enqueues first. The table is cached in the study's folder
per teacher and protocol; ``--refresh`` measures it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gansearch.cli.common import (
    JsonOpt,
    StudyArg,
    console,
    format_value,
    named_progress,
    progress_bar,
    user_errors,
)

if TYPE_CHECKING:
    from gansearch.sensitivity import GuidedPlan, SensitivityTable

PlotOpt = Annotated[
    Path | None,
    typer.Option("--plot", help="Heatmap PNG to write (default: <study dir>/sensitivity.png)."),
]
RefreshOpt = Annotated[
    bool, typer.Option("--refresh", help="Measure again even when the cache is current.")
]


@user_errors
def sensitivity(
    study: StudyArg, as_json: JsonOpt = False, plot: PlotOpt = None, refresh: RefreshOpt = False
) -> None:
    """Measure the quality loss of each single compression choice applied to the teacher."""
    from gansearch.benchmarks import load_benchmark
    from gansearch.candidates import study_space
    from gansearch.config import load_study
    from gansearch.sensitivity import guided_plans, harmful_choices, plot_heatmap, quality_budget
    from gansearch.sensitivity_measure import cache_path, sensitivity_table, skipped_families

    config = load_study(study)
    benchmark = load_benchmark(config)
    with progress_bar() as bar:
        named = named_progress(bar)
        table, cached = sensitivity_table(
            config,
            benchmark=benchmark,
            refresh=refresh,
            progress=lambda done, total, _gene: named("sensitivity", done, total),
        )
    png = plot if plot is not None else config.study_dir() / "sensitivity.png"
    plot_heatmap(table, png)
    budget = quality_budget(table)
    guided = guided_plans(table, study_space(benchmark, config), budget)
    harmful = harmful_choices(table)
    if as_json:
        payload = {
            "study": config.name,
            "cached": cached,
            "cache": str(cache_path(config)),
            "plot": str(png),
            "budget": budget,
            "skipped": list(skipped_families(config)),
            "harmful": [list(pair) for pair in harmful],
            "guided": [
                {
                    "share": g.share,
                    "predicted": g.predicted,
                    "choices": [list(c) for c in g.choices],
                }
                for g in guided
            ],
            "table": table.to_dict(),
        }
        print(json.dumps(payload, indent=2))
        return
    print_table(config.name, table, cached)
    print_summary(table, skipped_families(config), budget, guided, harmful, cache_path(config), png)


def _status(entry: Any) -> str:
    if entry.failure is not None:
        return f"failed: {entry.failure}"
    if entry.breaks:
        return "breaks " + "; ".join(entry.breaks)
    return "teacher" if entry.identity else "ok"


def print_table(study: str, table: SensitivityTable, cached: bool) -> None:
    """The entries as one rich table, a row per (gene, value)."""
    from rich.table import Table

    where = "cached" if cached else f"measured in {table.seconds:.1f} s"
    metric = table.metric
    out = Table(title=f"{study}: sensitivity of {metric} ({where})")
    for column in ("family", "layer / group", "value", metric, "loss", "± noise"):
        left = column in {"family", "layer / group"}
        out.add_column(column, justify="left" if left else "right", no_wrap=True)
    saved = list(dict.fromkeys(name for e in table.entries for name in e.saved))
    for name in saved:
        out.add_column(f"{name} saved", justify="right", no_wrap=True)
    out.add_column("status")
    for e in table.entries:
        out.add_row(
            e.family,
            e.target,
            e.label,
            format_value(metric, e.quality),
            format_value(metric, e.delta),
            f"{e.spread:.2g}",
            *(format_value(name, e.saved.get(name)) for name in saved),
            _status(e),
        )
    console().print(out)


def print_summary(
    table: SensitivityTable,
    skipped: tuple[str, ...],
    budget: float | None,
    guided: list[GuidedPlan],
    harmful: list[tuple[str, Any]],
    cache: Path,
    png: Path,
) -> None:
    """The teacher's figures, the allowed loss, harmful choices and the guided plans."""
    metric = table.metric
    lines = [
        f"teacher: {metric} {format_value(metric, table.teacher[metric])} "
        f"± {table.teacher_spread:.2g}; loss is positive when worse ({table.direction})",
        *skipped,
        "allowed loss: "
        + (
            f"{budget:.4g} (from the study's constraint on {metric})"
            if budget is not None
            else f"none: no constraint bounds {metric}, so there are no guided plans"
        ),
        "harmful alone (break a constraint or fail): "
        + (", ".join(f"{gene}={value}" for gene, value in harmful) or "none"),
    ]
    for g in guided:
        lines.append(
            f"guided plan (share {g.share:.3g} of the allowed loss per unit): "
            f"{len(g.choices)} choices, predicted loss {g.predicted:.2f} x allowed"
        )
    lines += [f"cache: {cache}", f"heatmap: {png}"]
    out = console()
    for line in lines:
        out.print(line, soft_wrap=True, markup=False, highlight=False)
