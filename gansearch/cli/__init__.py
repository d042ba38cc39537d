"""The ``gansearch`` command line.

One module per command family: :mod:`~gansearch.cli.evaluate`, :mod:`~gansearch.cli.study`
(run, studies, pareto, export, dashboard), :mod:`~gansearch.cli.zoo`,
:mod:`~gansearch.cli.bench` (and :mod:`~gansearch.cli.headline`, ``bench headline``,
:mod:`~gansearch.cli.bench_distill`, ``bench distill``),
:mod:`~gansearch.cli.supernet`, :mod:`~gansearch.cli.space` and
:mod:`~gansearch.cli.sensitivity`;
what they share is in :mod:`~gansearch.cli.common`. This module only assembles
:data:`app`, the console entry point.

Heavy modules (torch, the evaluators) are imported inside commands so that
``gansearch --help`` answers at once. A :class:`~gansearch.errors.GansearchError` is
printed as one line on stderr with a non-zero exit; any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import typer

from gansearch.cli import (
    bench,
    bench_distill,
    evaluate,
    headline,
    sensitivity,
    space,
    study,
    supernet,
    zoo,
)

app = typer.Typer(
    name="gansearch",
    help="Search for smaller, faster versions of a trained GAN generator.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.command()(evaluate.evaluate)
app.command()(study.run)
app.command()(study.studies)
app.command()(study.pareto)
app.command("export")(study.export_command)
app.command()(study.dashboard)
app.command()(space.space)
app.command()(sensitivity.sensitivity)
app.add_typer(zoo.app, name="zoo")
bench.app.command("headline")(headline.headline)
bench.app.command("distill")(bench_distill.distill)
app.add_typer(bench.app, name="bench")
app.add_typer(supernet.app, name="supernet")


def main() -> None:  # pragma: no cover - console entry point
    app()
