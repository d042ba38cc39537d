"""``gansearch space``: the space a study will search, before searching it.

It loads the teacher and builds the joint space exactly as the search does
(:func:`~gansearch.candidates.study_space`), then prints the genes, the prunable and the
excluded groups (with reasons) and the size of the space. It scores nothing and computes
no reference statistics, so it takes about as long as loading the teacher.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gansearch.cli.common import JsonOpt, StudyArg, console, user_errors

if TYPE_CHECKING:
    from gansearch.space_report import SpaceReport


@user_errors
def space(study: StudyArg, as_json: JsonOpt = False) -> None:
    """Show the genes, prunable and excluded groups (with reasons) and the space's size."""
    from gansearch.benchmarks import load_benchmark
    from gansearch.candidates import study_space
    from gansearch.config import load_study
    from gansearch.space_report import space_report

    config = load_study(study)
    report = space_report(study_space(load_benchmark(config), config), config.name)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_space_report(report)


def _values(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def print_space_report(report: SpaceReport) -> None:
    """Print a :class:`~gansearch.space_report.SpaceReport` as rich tables."""
    from rich.table import Table

    out = console()
    genes = Table(title=f"{report.study}: genes")
    for column in ("gene", "kind", "values", "controls"):
        genes.add_column(column)
    for gene in report.genes:
        values = (
            f"{gene.length} channels, keep >= {gene.min_keep}"
            if gene.kind == "mask"
            else _values(gene.choices)
        )
        genes.add_row(gene.name, gene.kind, values, gene.controls)
    out.print(genes)

    groups = Table(title="prunable groups")
    for column in ("group", "channels", "layers"):
        groups.add_column(column)
    for group in report.groups:
        members = _values(f"{m['layer']} ({m['dim']})" for m in group["members"])
        groups.add_row(group["name"], str(group["channels"]), members)
    out.print(groups)

    # Reasons are sentences: one soft-wrapped line each reads better than a narrow column.
    out.print(f"excluded groups: {len(report.excluded) or 'none'}", highlight=False)
    for group in report.excluded:
        out.print(
            f"  {group['name']} ({group['channels']} channels): {group['reason']}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )

    on = [name for name, searched in report.techniques.items() if searched]
    off = [name for name, searched in report.techniques.items() if not searched]
    lines = [
        f"techniques searched: {_values(on) or 'none'}; not searched: {_values(off) or 'none'}"
    ]
    if report.fixed:
        lines.append("fixed in every plan: " + _values(f"{k}={v}" for k, v in report.fixed.items()))
    lines.append(
        f"size: {len(report.genes)} genes, {report.genomes} distinct genomes "
        f"(10^{report.log10_genomes:.1f})"
    )
    for line in lines:
        out.print(line, soft_wrap=True, markup=False, highlight=False)
