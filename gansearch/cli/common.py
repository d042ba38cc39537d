"""What every command family shares: error handling, console, number formats, progress.

Only typer is imported here; rich and gansearch's own modules are imported when a
command runs, so that ``gansearch --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

StudyArg = Annotated[Path, typer.Argument(help="Study YAML file, e.g. studies/digits.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]

COUNT_METRICS = frozenset({"macs", "params", "stored_bytes", "bitops"})
REFUSED_BY_FILE_SYSTEM = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
"""Errnos of a file system that refuses a write: the user's environment, never a bug."""


def refused_message(error: OSError) -> str:
    """One line for a refused read or write: the path, the reason and where to move outputs."""
    where = error.filename if error.filename is not None else "a file"
    return (
        f"cannot write {where} ({error.strerror}); make it writable, or choose writable "
        "folders: `output_dir:` for study outputs, `--storage` for the database, "
        "`evaluation.cache_dir:` or $GANSEARCH_CACHE for the feature cache, `--out` for "
        "trained weights"
    )


def user_errors(command: F) -> F:
    """Turn user errors into one line on stderr and a non-zero exit.

    A :class:`~gansearch.errors.GansearchError` is printed as ``gansearch: error: ...``
    and exits with its ``exit_code``; so is a file-system refusal (permission denied, a
    read-only file system), which is the user's environment, not a bug: the line names the
    path and the settings that move gansearch's outputs. Any other exception is a bug and
    keeps its traceback.
    A SIGINT (Ctrl-C) at any moment of the command, even in a process that inherited SIGINT
    ignored, prints ``gansearch: interrupted`` and exits 130, the shell's convention
    (:func:`~gansearch.runner.signals.sigint_stops_command`).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from gansearch.errors import GansearchError
        from gansearch.runner.signals import sigint_stops_command

        try:
            with sigint_stops_command():
                return command(*args, **kwargs)
        except GansearchError as error:
            print(f"gansearch: error: {error}", file=sys.stderr)
            raise typer.Exit(error.exit_code) from None
        except OSError as error:
            if error.errno not in REFUSED_BY_FILE_SYSTEM:
                raise
            print(f"gansearch: error: {refused_message(error)}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("gansearch: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

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


@contextlib.contextmanager
def progress_bar(fields: str = "{task.fields[losses]}") -> Iterator[Any]:
    """A progress bar on stderr; ``fields`` formats the tasks' extra fields (default:
    a ``losses`` text field).

    When the command fails inside the bar (a user error, Ctrl-C), the bar is erased
    (Rich's ``transient``), so the error stays the command's one line on stderr.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(fields),
        TimeRemainingColumn(),
        console=console(stderr=True),
    )
    with progress:
        try:
            yield progress
        except BaseException:
            progress.live.transient = True
            raise


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
