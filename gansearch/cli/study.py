"""The search commands: ``run``, ``studies``, ``pareto``, ``export`` and ``dashboard``.

Each works on a study's Optuna storage (:mod:`gansearch.runner.storage`): ``run`` fills
it (:func:`gansearch.study.run_study`), the others read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gansearch.cli.common import StudyArg, console, format_value, progress_bar, user_errors

StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL (default: sqlite in studies/<name>/): any RDB URL, e.g. "
        "sqlite:///study.db or postgresql://user:pw@host/db, or a journal file for "
        "controllers on a shared file system, journal:///abs/path.log or "
        "journal://relative/path.log. In-memory storage is refused."
    ),
]


def _front_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    quality = report["front"][0]["quality_metric"] if report["front"] else "quality"
    size = f"{len(report['front'])} of {report['trials']} trials"
    table = Table(title=f"{report['study']}: Pareto front ({size})")
    for column in (
        "trial",
        quality,
        "stored bytes",
        "compression",
        "MACs",
        "MACs reduction",
        "latency ms",
    ):
        table.add_column(column, justify="right")

    def ratio(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}x"

    for row in report["front"]:
        spread = row["quality_spread"]
        quality_text = "n/a" if row["quality"] is None else f"{row['quality']:.4g}"
        if spread is not None and row["quality"] is not None:
            quality_text += f" ± {spread:.2g}"
        table.add_row(
            str(row["trial"]),
            quality_text,
            format_value("stored_bytes", row["stored_bytes"]),
            ratio(row["compression"]),
            format_value("macs", row["macs"]),
            ratio(row["macs_reduction"]),
            format_value("latency_ms", row["latency_ms"]),
        )
    return table


def _print_front(report: dict[str, Any]) -> None:
    out = console()
    out.print(_front_table(report))
    if report["hypervolume"] is not None:
        point = ", ".join(f"{k}={v:g}" for k, v in report["reference_point"]["values"].items())
        out.print(
            f"hypervolume {report['hypervolume']:.4g} against reference ({point}), "
            "in normalised losses (objective / teacher; teacher-fidelity metrics on "
            "absolute scales)"
        )
    if report["constraints"]:
        out.print(f"feasible = {' and '.join(report['constraints'])}")
    if report.get("unjudged"):
        out.print(
            f"infeasible for lack of a metric the constraints need: trials {report['unjudged']}"
        )
    if report.get("low_fidelity_only") or report.get("promoted"):
        out.print(
            f"multi-fidelity: {report['low_fidelity_only']} trials scored at low fidelity only "
            f"(never on the front), {report['promoted']} promoted to full"
        )


def _search_progress() -> Any:
    """The progress bar of ``run``: finished trials, failures, front size, best values."""
    return progress_bar(
        "fail {task.fields[failed]}  front {task.fields[front]}  {task.fields[tuned]}"
        "{task.fields[best]}"
    )


def _finetune_share(timing: dict[str, float], result: Any) -> str:
    """Adds ``result``'s times to ``timing``; the fine-tune's share so far, e.g. for the bar."""
    timing["evaluating"] += result.seconds
    timing["finetune"] += result.finetune_seconds
    if timing["finetune"] <= 0:
        return ""
    return (
        f"fine-tune {timing['finetune']:.0f} s ({timing['finetune'] / timing['evaluating']:.0%})  "
    )


def _best_feasible(front: list[Any], objectives: tuple[str, ...] | list[str]) -> str:
    """The best value of each objective on the feasible front, e.g. for the progress bar."""
    if not front:
        return ""
    from gansearch.evaluators.objectives import METRICS

    parts = []
    for i, name in enumerate(objectives):
        value = max((p.values[i] for p in front), key=lambda v: METRICS[name].sign * v)
        parts.append(f"{name} {value:.4g}")
    return "best feasible: " + ", ".join(parts)


@user_errors
def run(
    study: StudyArg,
    trials: Annotated[int | None, typer.Option(help="Total finished trials to reach.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop proposing after S seconds.")] = None,
    strategy: Annotated[str | None, typer.Option(help="optuna, deap or hybrid.")] = None,
    storage: StorageOpt = None,
    seed: Annotated[int | None, typer.Option(help="Strategy seed (default: the study's).")] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Where candidates run: local (in this process) or ray (default: the study's)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Ray workers, i.e. candidates in flight (default: the study's)."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Join a running Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
            "(default: start a private local Ray and stop it at the end)."
        ),
    ] = None,
) -> None:
    """Run or continue a search study; ends by printing the Pareto front."""
    from gansearch.config import load_study
    from gansearch.errors import GansearchError
    from gansearch.evaluation_config import SEED_LIMIT
    from gansearch.search.registry import ENGINE_NAMES, STRATEGY_NAMES

    config = load_study(study)
    if strategy is not None and strategy not in STRATEGY_NAMES:
        raise GansearchError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGY_NAMES)}")
    if trials is not None and trials < 1:
        raise GansearchError(f"`--trials` must be at least 1, got {trials}")
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise GansearchError(f"`--seed` must be in [0, 2**32), got {seed}")
    if engine is not None and engine not in ENGINE_NAMES:
        raise GansearchError(f"unknown engine {engine!r}; known: {', '.join(ENGINE_NAMES)}")
    if workers is not None and workers < 1:
        raise GansearchError(f"`--workers` must be at least 1, got {workers}")
    if (workers is not None or address is not None) and (engine or config.search.engine) != "ray":
        raise GansearchError("`--workers` and `--address` need `--engine ray`")
    from gansearch.pareto import pareto_front, pareto_report
    from gansearch.runner.storage import finished_trials, open_study, redact
    from gansearch.study import run_study

    constraints = config.search.constraints
    budget = trials if trials is not None else config.search.trials
    objectives = config.objectives
    open_study(config, storage)  # a bad storage URL fails here, before anything is loaded
    ray_address = address if address is not None else config.search.address
    if (engine or config.search.engine) == "ray" and ray_address is not None:
        from gansearch.search.engines import preflight

        preflight(ray_address)  # so does an unreachable Ray cluster, within seconds
    with _search_progress() as bar:
        task = bar.add_task(
            f"{config.name}: loading", total=budget, failed=0, front=0, best="", tuned=""
        )
        timing = {"evaluating": 0.0, "finetune": 0.0}

        def on_start(optuna_study: Any, evaluator: Any) -> None:
            done = finished_trials(optuna_study)
            failed = sum(t.state.name == "FAIL" for t in done)
            bar.update(task, description=config.name, completed=len(done), failed=failed)

        def on_result(result: Any, trial: Any) -> None:
            front = pareto_front(trial.study, objectives, constraints=constraints)
            bar.update(
                task,
                advance=1,
                front=len(front),
                best=_best_feasible(front, objectives),
                tuned=_finetune_share(timing, result),
                failed=bar.tasks[task].fields["failed"] + (result.failure is not None),
            )

        summary = run_study(
            config,
            trials=trials,
            timeout=timeout,
            strategy=strategy,
            storage=storage,
            seed=seed,
            engine=engine,
            workers=workers,
            address=address,
            on_start=on_start,
            on_result=on_result,
        )
    out = console()
    if timing["finetune"] > 0:
        out.print(
            f"in-search fine-tune ({config.search.finetune_steps} steps per candidate): "
            f"{timing['finetune']:.0f} s of {timing['evaluating']:.0f} s spent evaluating"
        )
    out.print(
        f"{summary.study_name}: evaluated {summary.evaluated} candidates "
        f"in {summary.seconds:.0f} s ({summary.finished} finished, {summary.failed} failed"
        + (f", {summary.recovered} interrupted trials re-proposed" if summary.recovered else "")
        + f"); storage {redact(summary.storage)}"
    )
    if config.search.fidelity is not None:
        out.print(
            f"multi-fidelity: {summary.promoted} promoted to the full protocol, "
            f"{summary.low_only} kept at low fidelity"
        )
    _print_front(pareto_report(open_study(config, storage), objectives, constraints=constraints))


@user_errors
def studies(
    storage: StorageOpt = None,
    root: Annotated[Path, typer.Option(help="Folder of study outputs to scan.")] = Path("studies"),
) -> None:
    """List the studies (and their trial counts) in a storage, or in studies/*/study.db."""
    import optuna
    from rich.table import Table

    from gansearch.runner.storage import StorageError, open_storage, redact

    urls = (
        [storage] if storage else [f"sqlite:///{path}" for path in sorted(root.glob("*/study.db"))]
    )
    table = Table(title="studies")
    for column in ("study", "complete", "failed", "running", "directions", "storage"):
        table.add_column(column)
    for url in urls:
        try:
            backend = open_storage(url)
            summaries = optuna.get_all_study_summaries(backend, include_best_trial=False)
        except StorageError:
            raise
        except Exception as error:  # noqa: BLE001 - driver errors vary by backend
            raise StorageError(
                f"cannot open storage {redact(url)} ({type(error).__name__}); check the URL"
            ) from None
        for summary in summaries:
            trials = optuna.load_study(study_name=summary.study_name, storage=backend).get_trials(
                deepcopy=False
            )
            count = {
                state: sum(t.state.name == state for t in trials)
                for state in ("COMPLETE", "FAIL", "RUNNING")
            }
            table.add_row(
                summary.study_name,
                str(count["COMPLETE"]),
                str(count["FAIL"]),
                str(count["RUNNING"]),
                ",".join(d.name.lower() for d in summary.directions),
                redact(url),
            )
    console().print(table)


@user_errors
def pareto(
    study: StudyArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the same data as JSON.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write PATH (.png) and PATH with .html.")
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """The feasible Pareto-optimal trials, their ratios to the teacher, and the hypervolume."""
    from gansearch.config import load_study
    from gansearch.pareto import pareto_front, pareto_report, write_plots
    from gansearch.runner.storage import open_study

    config = load_study(study)
    optuna_study = open_study(config, storage, create=False)
    constraints = config.search.constraints  # the study file's, as it reads now
    report = pareto_report(optuna_study, config.objectives, constraints=constraints)
    if plot is not None:
        cost = (
            next(
                (o for o in config.objectives if o != report["front"][0]["quality_metric"]),
                "stored_bytes",
            )
            if report["front"]
            else "stored_bytes"
        )
        quality = report["front"][0]["quality_metric"] if report["front"] else "fid"
        png = plot.with_suffix(".png")
        html = plot.with_suffix(".html")
        png.parent.mkdir(parents=True, exist_ok=True)
        front = pareto_front(optuna_study, config.objectives, constraints=constraints)
        write_plots(optuna_study, front, quality, cost, png, html, constraints=constraints)
        report["plots"] = {"png": str(png), "html": str(html)}
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_front(report)
    if plot is not None:
        console().print(f"plots: {report['plots']['png']}, {report['plots']['html']}")


@user_errors
def export_command(
    study: StudyArg,
    out: Annotated[Path, typer.Option(help="Artifact folder to write.")],
    trial: Annotated[int | None, typer.Option(help="Trial number to export.")] = None,
    pick: Annotated[
        str | None,
        typer.Option(
            help="'knee', 'compression' (largest geometric-mean cost ratio) or "
            "'best:<metric>' on the feasible Pareto front."
        ),
    ] = None,
    finetune_steps: Annotated[
        int | None,
        typer.Option(
            help="Final quantisation-aware distillation steps (default: the study's "
            "`export.finetune_steps`, 1000 unless set; 0 = none)."
        ),
    ] = None,
    storage: StorageOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a folder that holds other files; only the artifact's own files "
            "(manifest.json, weights.safetensors, model.onnx, samples.png) are replaced.",
        ),
    ] = False,
) -> None:
    """Rebuild a trial's candidate, optionally fine-tune it, and write a compact artifact."""
    from gansearch.errors import GansearchError

    if (trial is None) == (pick is None):
        raise GansearchError(
            "give exactly one of `--trial N` or `--pick knee|compression|best:<metric>`"
        )
    if finetune_steps is not None and finetune_steps < 0:
        raise GansearchError(f"`--finetune-steps` must be >= 0, got {finetune_steps}")
    from gansearch.study_export import export_trial

    result = export_trial(
        study,
        out,
        trial=trial,
        pick=pick,
        finetune_steps=finetune_steps,
        storage=storage,
        force=force,
    )
    from rich.table import Table

    tuned = result["finetune"]
    table = Table(title=f"trial {result['trial']} -> {result['artifact']}")
    for column in ("metric", "teacher", "trial (searched)", "artifact"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    spread = result["artifact_spread"]
    for name, value in result["artifact_metrics"].items():
        shown = format_value(name, value)
        if spread.get(name) is not None and name != "latency_ms":
            shown += f" ± {spread[name]:.2g}"
        table.add_row(
            name,
            format_value(name, result["teacher_metrics"].get(name)),
            format_value(name, result["trial_metrics"].get(name)),
            shown,
        )
    out = console()
    out.print(table)
    if "before" in tuned:
        out.print(
            f"fine-tune: {tuned['steps']} steps in {tuned['seconds']:.0f} s, kept step "
            f"{tuned['best_step']} (the best held-out quality; 0 = the searched candidate)"
        )
    for text, holds in result["constraints"].items():
        out.print(f"constraint {text}: {'holds' if holds else 'VIOLATED'} on the artifact")
    out.print(f"wrote {result['artifact']} ({', '.join(result['files'])})")


@user_errors
def dashboard(
    study: StudyArg,
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8080,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Serve on a non-loopback --host. The dashboard has no authentication and "
            "anyone who reaches it can edit and delete studies.",
        ),
    ] = False,
) -> None:
    """Open optuna-dashboard on the study's storage (on this machine only, by default)."""
    from gansearch.config import load_study
    from gansearch.errors import GansearchError
    from gansearch.runner.storage import connect, redact

    if not allow_remote and not _is_loopback(host):
        raise GansearchError(
            f"--host {host} would expose the dashboard, which has no authentication and can "
            "delete studies, beyond this machine; serve on 127.0.0.1 and use an SSH tunnel, "
            "or pass --allow-remote"
        )
    config = load_study(study)
    shared = connect(config, storage, create=False)  # one clear line if the study is missing
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise GansearchError(
            "optuna-dashboard is not installed; pip install optuna-dashboard"
        ) from None
    shown = redact(shared.url)
    console().print(f"optuna-dashboard for {config.name} ({shown}) at http://{host}:{port}")
    if not _is_loopback(host):
        console(stderr=True).print(
            "warning: the dashboard has no authentication; anyone who reaches "
            f"{host}:{port} can edit and delete studies"
        )
    run_server(shared.storage, host=host, port=port)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"
