"""What every command family shares: error handling, console, number formats, progress.

Only typer is imported here; rich and gansearch's own modules are imported when a
command runs, so that ``gansearch --help`` answers at once.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

StudyArg = Annotated[Path, typer.Argument(help="Study YAML file, e.g. studies/digits.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]

COUNT_METRICS = frozenset({"macs", "params", "stored_bytes", "bitops"})


def user_errors(command: F) -> F:
    """Turn user errors into one line on stderr and a non-zero exit.

    A :class:`~gansearch.errors.GansearchError` is printed as ``gansearch: error: ...``
    and exits with its ``exit_code``; any other exception is a bug and keeps its traceback.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from gansearch.errors import GansearchError

        try:
            return command(*args, **kwargs)
        except GansearchError as error:
            print(f"gansearch: error: {error}", file=sys.stderr)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (tables, results) or stderr (progress)."""
    from rich.console import Console

    return Console(stderr=stderr)


def format_value(name: str, value: float | None) -> str:
    """A metric for a table: counts with thousands separators, others to 4 digits."""
    if value is None:
        return "n/a"
    if name in COUNT_METRICS:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def print_score_table(title: str, payload: Mapping[str, Any]) -> None:
    """Print a :meth:`Score.to_dict <gansearch.evaluators.scorer.Score.to_dict>` as a table."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("metric", "value", "± noise floor", "better", "unit"):
        table.add_column(
            column, justify="right" if column in {"value", "± noise floor"} else "left"
        )
    for name, entry in payload.items():
        spread = entry["spread"]
        table.add_row(
            name,
            format_value(name, entry["value"]),
            "" if spread is None else f"{spread:.2g}",
            "lower" if entry["direction"] == "minimize" else "higher",
            entry["unit"],
        )
    console().print(table)


def progress_bar(fields: str = "{task.fields[losses]}") -> Any:
    """A progress bar on stderr; ``fields`` formats the tasks' extra fields (default:
    a ``losses`` text field)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(fields),
        TimeRemainingColumn(),
        console=console(stderr=True),
    )


def training_progress(bar: Any, task: Any) -> Callable[[int, int, Mapping[str, float]], None]:
    """A training loop's ``progress(step, total, losses)`` callback that moves ``task``."""

    def progress(step: int, total: int, losses: Mapping[str, float]) -> None:
        shown = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
        bar.update(task, completed=step, total=total, losses=shown)

    return progress


def named_progress(bar: Any) -> Callable[[str, int, int], None]:
    """A benchmark's ``on_result(name, done, total)`` callback: one task per name."""
    tasks: dict[str, Any] = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total, losses="")
        bar.update(tasks[name], completed=done)

    return progress
