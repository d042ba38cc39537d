"""One study shared by several controllers (``gansearch run`` processes): nothing lost.

Every controller here is a real ``gansearch run`` process on a toy custom-model study
(objectives stored bytes and MACs, so a trial takes a fraction of a second), started
together or staggered on one storage. At the end every budgeted trial is COMPLETE (or FAIL
with a true reason), none is RUNNING or WAITING, exactly the budget counts, and each
controller evaluated exactly the trials it created. A controller killed by PID leaves a
RUNNING trial that the others fail once its heartbeat is older than the grace period,
while a live controller's trials are never touched. Also here: strategy state kept in the
storage, in-memory storage refused, journal storage, redacted passwords, the read-only
message, the dashboard's --host guard, and feasibility judged against the current
constraints.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from gansearch.runner.storage import INTERRUPTED, NOT_EVALUATED, redact

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _write_modules(folder: Path) -> None:
    """The study's data, and a toy generator that takes ``SLOW_TOY_SECONDS`` per forward."""
    (folder / "shareddata.py").write_text(
        textwrap.dedent(
            """
            import torch

            def data():
                return torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
            """
        )
    )
    (folder / "slowtoy.py").write_text(
        textwrap.dedent(
            """
            import os
            import time

            from toy_models import ToyGenerator


            class SlowToy(ToyGenerator):
                def forward(self, z):
                    time.sleep(float(os.environ.get("SLOW_TOY_SECONDS", "0")))
                    return super().forward(z)
            """
        )
    )


def _study(
    tmp_path: Path,
    *,
    trials: int,
    name: str = "shared",
    constraints: tuple[str, ...] = ("stored_bytes <= 1.0 * teacher",),
    **search: Any,
) -> Path:
    _write_modules(tmp_path)
    data = {
        "name": name,
        "seed": 0,
        "objectives": ["stored_bytes", "macs"],
        "output_dir": str(tmp_path / name),
        "evaluation": {"num_samples": 16, "seeds": [0], "latency": {"runs": 3, "warmup": 0}},
        "model": {
            "generator": "slowtoy:SlowToy",
            "data": "shareddata:data",
            "latent_shape": [8],
        },
        "search": {
            "strategy": "deap",
            "trials": trials,
            "population": 4,
            "constraints": list(constraints),
            **search,
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env(tmp_path: Path, slow: float = 0.0) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(tmp_path)]),
        "GANSEARCH_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
        "SLOW_TOY_SECONDS": str(slow),
    }


def _gansearch() -> str:
    return str(Path(sys.executable).with_name("gansearch"))


def _start(study: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [_gansearch(), "run", str(study), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cli(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_gansearch(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    return out, err


def _trials(url: str, name: str = "shared") -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials()
    except KeyError:  # not created yet
        return []


def _count(db: Path, state: str, seed: int | None = None) -> int:
    """Trials in ``state`` (of controller ``seed``) read with sqlite3 directly, so that polling
    never creates the database or its tables itself (0 before they exist)."""
    import sqlite3

    query = "SELECT COUNT(*) FROM trials t WHERE t.state = ?"
    args: list[Any] = [state]
    if seed is not None:
        query += (
            " AND EXISTS (SELECT 1 FROM trial_user_attributes a WHERE a.trial_id = t.trial_id"
            " AND a.key = 'seed' AND a.value_json = ?)"
        )
        args.append(str(seed))
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
            return connection.execute(query, args).fetchone()[0]
    except sqlite3.Error:
        return 0


def _wait_for(condition: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _evaluated(out: str) -> int:
    match = re.search(r"evaluated (\d+) candidates", out)
    assert match, out
    return int(match[1])


def _check_shared_budget(
    trials: list[optuna.trial.FrozenTrial], budget: int, evaluated_by_seed: dict[int, int]
) -> None:
    """Exactly ``budget`` counted trials, nothing left RUNNING or WAITING, nothing stolen."""
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states, states
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    failed = [t for t in trials if t.state.name == "FAIL"]
    # the only failures of healthy controllers: trials withdrawn in a race for the last slot
    assert all(t.user_attrs.get("fail_reason") == NOT_EVALUATED for t in failed), [
        t.user_attrs for t in failed
    ]
    assert len(complete) == budget
    # every trial was evaluated by the controller that created it (its seed), once
    for seed, evaluated in evaluated_by_seed.items():
        assert sum(t.user_attrs["seed"] == seed for t in complete) == evaluated, seed
    assert sum(evaluated_by_seed.values()) == budget
    created = [(t.user_attrs["seed"], t.user_attrs["proposal"]) for t in complete]
    assert len(set(created)) == len(created)


@pytest.mark.slow
@pytest.mark.parametrize("start", ["together", "staggered"])
def test_three_controllers_share_one_budget(tmp_path: Path, start: str) -> None:
    budget = 9
    study = _study(tmp_path, trials=budget)
    db = tmp_path / "shared" / "study.db"
    url = f"sqlite:///{db}"
    env = _env(tmp_path, slow=0.0 if start == "together" else 0.3)  # staggered: ~2 s a trial
    seeds = (1, 2, 3)
    processes = {}
    for index, seed in enumerate(seeds):
        if start == "staggered" and index:
            _wait_for(lambda i=index: _count(db, "COMPLETE") >= i)
        processes[seed] = _start(study, env, "--seed", str(seed))
    outputs = {seed: _finish(process) for seed, process in processes.items()}
    for _, err in outputs.values():
        assert "already exists" not in err
    evaluated = {seed: _evaluated(out) for seed, (out, _) in outputs.items()}
    _check_shared_budget(_trials(url), budget, evaluated)
    assert sum(count > 0 for count in evaluated.values()) >= 2, evaluated  # really shared


@pytest.mark.slow
def test_controllers_on_a_journal_file(tmp_path: Path) -> None:
    budget = 6
    study = _study(tmp_path, trials=budget)
    url = f"journal://{tmp_path / 'study.log'}"
    env = _env(tmp_path)
    processes = {seed: _start(study, env, "--seed", str(seed), "--storage", url) for seed in (1, 2)}
    evaluated = {seed: _evaluated(_finish(process)[0]) for seed, process in processes.items()}
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))
    )
    _check_shared_budget(_trials(storage), budget, evaluated)
    report = _cli(env, "pareto", str(study), "--storage", url, "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["trials"] >= budget


def test_fresh_sqlite_file_created_by_many_processes_at_once(tmp_path: Path) -> None:
    """Optuna's table creation races ("table studies already exists"); a lock file serialises it."""
    study = _study(tmp_path, trials=1)
    script = textwrap.dedent(
        """
        import sys, time
        from gansearch.config import load_study
        from gansearch.runner.storage import connect

        config = load_study(sys.argv[1])
        start = float(sys.argv[3])
        while time.time() < start:
            pass
        connect(config, sys.argv[2])
        print("ok")
        """
    )
    env = _env(tmp_path)
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        start = str(time.time() + 4.0)  # after every interpreter has imported
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(study), url, start],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0 and out.strip() == "ok", err


@pytest.mark.slow
def test_killed_controller_is_recovered_and_live_ones_are_not(tmp_path: Path) -> None:
    budget = 8
    study = _study(tmp_path, trials=budget, heartbeat_interval=1, grace_period=5)
    db = tmp_path / "shared" / "study.db"
    url = f"sqlite:///{db}"
    env = _env(tmp_path, slow=0.15)  # about a second per trial

    live = _start(study, env, "--seed", "1")
    doomed = _start(study, env, "--seed", "2")
    _wait_for(lambda: _count(db, "RUNNING", 2) and _count(db, "COMPLETE", 2))
    doomed.send_signal(signal.SIGKILL)  # mid-trial, by PID
    doomed.communicate()
    (orphan,) = [t for t in _trials(url) if t.state.name == "RUNNING" and t.user_attrs["seed"] == 2]
    newcomer = _start(study, env, "--seed", "3")  # starts within the grace period
    live_out, _ = _finish(live)
    newcomer_out, _ = _finish(newcomer)

    trials = _trials(url)
    after = trials[orphan.number]
    assert after.state.name == "FAIL" and "fail_reason" not in after.user_attrs  # interrupted
    assert not [t for t in trials if t.state.name in {"RUNNING", "WAITING"}]
    # a live controller's trial is never failed: every trial of seeds 1 and 3 was told
    # by its own controller (COMPLETE, or withdrawn in a race for the last slot)
    for trial in trials:
        if trial.user_attrs["seed"] in (1, 3):
            assert trial.state.name == "COMPLETE" or (
                trial.user_attrs.get("fail_reason") == NOT_EVALUATED
            ), trial
    counted = [
        t
        for t in trials
        if t.state.name == "COMPLETE"
        or t.user_attrs.get("fail_reason") not in (None, INTERRUPTED, NOT_EVALUATED)
    ]
    assert len(counted) == budget
    killed_complete = sum(t.user_attrs["seed"] == 2 and t.state.name == "COMPLETE" for t in trials)
    assert _evaluated(live_out) + _evaluated(newcomer_out) + killed_complete == budget


def test_strategy_state_lives_in_the_storage(tmp_path: Path) -> None:
    study = _study(tmp_path, trials=3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    url = f"sqlite:///{elsewhere / 'study.db'}"
    env = _env(tmp_path)
    first = _cli(env, "run", str(study), "--storage", url, cwd=work)
    assert first.returncode == 0, first.stderr
    assert list(work.iterdir()) == []  # nothing written relative to the working directory
    stored = optuna.load_study(study_name="shared", storage=url)
    assert stored.user_attrs["strategy_state:deap:0"]
    assert stored.trials[0].user_attrs.get("reference")  # a fresh study starts at the references

    (elsewhere / "study.db").unlink()  # a new storage never resumes the old strategy
    second = _cli(env, "run", str(study), "--storage", url, cwd=work)
    assert second.returncode == 0, second.stderr
    fresh = optuna.load_study(study_name="shared", storage=url).trials
    assert len(fresh) == 3 and fresh[0].user_attrs.get("reference")
    assert fresh[0].params == stored.trials[0].params


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_storage_is_refused(tmp_path: Path, url: str) -> None:
    result = _cli(_env(tmp_path), "run", str(_study(tmp_path, trials=2)), "--storage", url)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "in memory" in result.stderr and "sqlite:///study.db" in result.stderr


def test_passwords_never_printed(tmp_path: Path) -> None:
    assert redact("postgresql://bob:hunter2@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact("mysql+pymysql://u:p%40ss@h/x and more") == "mysql+pymysql://u:***@h/x and more"
    assert redact("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert redact("postgresql://bob@db/x") == "postgresql://bob@db/x"
    study = _study(tmp_path, trials=2)
    url = "postgresql+psycopg2://bob:hunter2@127.0.0.1:9/none"
    for command in (["run", str(study)], ["pareto", str(study)], ["studies"]):
        result = _cli(_env(tmp_path), *command, "--storage", url)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "hunter2" not in result.stderr + result.stdout and "bob:***@" in result.stderr


def test_read_only_database_says_so(tmp_path: Path) -> None:
    study = _study(tmp_path, trials=2)
    env = _env(tmp_path)
    assert _cli(env, "run", str(study)).returncode == 0
    read_only = f"sqlite:///file:{tmp_path / 'shared' / 'study.db'}?mode=ro&uri=true"
    result = _cli(env, "run", str(study), "--trials", "3", "--storage", read_only)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "is read-only" in result.stderr and "check the URL" not in result.stderr
    assert (
        _cli(env, "pareto", str(study), "--storage", read_only).returncode == 0
    )  # reading is fine


def test_dashboard_on_a_public_host_needs_allow_remote(tmp_path: Path) -> None:
    study = _study(tmp_path, trials=2)
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        result = _cli(_env(tmp_path), "dashboard", str(study), "--host", host)
        assert result.returncode == 2 and "--allow-remote" in result.stderr
        assert result.stderr.strip().count("\n") == 0


def test_feasibility_follows_the_current_constraints(tmp_path: Path) -> None:
    from gansearch.config import load_study
    from gansearch.errors import GansearchError
    from gansearch.runner.storage import open_study
    from gansearch.study_export import choose_trial

    study = _study(tmp_path, trials=4)
    env = _env(tmp_path)
    assert _cli(env, "run", str(study)).returncode == 0
    loose = json.loads(_cli(env, "pareto", str(study), "--json").stdout)
    assert loose["front"]
    # tighten the study file: every recorded trial is now far from feasible
    data = yaml.safe_load(study.read_text())
    data["search"]["constraints"] = ["stored_bytes <= 0.001 * teacher"]
    study.write_text(yaml.safe_dump(data))
    tight = json.loads(_cli(env, "pareto", str(study), "--json").stdout)
    assert tight["front"] == [] and tight["constraints"] == ["stored_bytes <= 0.001 * teacher"]
    config = load_study(study)
    with pytest.raises(GansearchError, match="front is empty"):
        choose_trial(
            open_study(config, create=False),
            config.objectives,
            trial=None,
            pick="knee",
            constraints=config.search.constraints,
        )
    exported = _cli(env, "export", str(study), "--pick", "knee", "--out", str(tmp_path / "a"))
    assert exported.returncode == 2 and "front is empty" in exported.stderr


def _stop_holding_no_lock(process: subprocess.Popen, db: Path) -> None:
    """SIGSTOP ``process`` at a moment it holds no SQLite write lock.

    A process stopped inside a write transaction (its heartbeat thread writes every second)
    would block every other connection, which is SQLite's rule, not the scenario tested.
    """
    import sqlite3

    for _ in range(50):
        process.send_signal(signal.SIGSTOP)
        try:
            with sqlite3.connect(str(db), timeout=0.5) as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.rollback()
            return
        except sqlite3.OperationalError:  # locked by the stopped process: let it finish
            process.send_signal(signal.SIGCONT)
            time.sleep(0.1)
    raise AssertionError("the controller always held the database lock")


@pytest.mark.slow
def test_a_paused_controller_keeps_its_result_in_a_new_trial(tmp_path: Path) -> None:
    """Paused past the grace period, a controller's trial is failed by the others; once it
    resumes, it records its result as a new trial (``replaces``) instead of crashing."""
    budget = 6
    study = _study(tmp_path, trials=budget, heartbeat_interval=1, grace_period=3)
    db = tmp_path / "shared" / "study.db"
    url = f"sqlite:///{db}"
    env = _env(tmp_path, slow=0.3)
    paused = _start(study, env, "--seed", "1")
    _wait_for(lambda: _count(db, "COMPLETE", 1) and _count(db, "RUNNING", 1))
    _stop_holding_no_lock(paused, db)
    (stale,) = [t for t in _trials(url) if t.state.name == "RUNNING" and t.user_attrs["seed"] == 1]
    other = _start(study, env, "--seed", "2")
    _wait_for(lambda: _trials(url)[stale.number].state.name == "FAIL")
    paused.send_signal(signal.SIGCONT)
    _finish(paused)
    _finish(other)

    trials = _trials(url)
    assert "fail_reason" not in trials[stale.number].user_attrs  # interrupted, not counted
    (kept,) = [t for t in trials if t.user_attrs.get("replaces") == stale.number]
    assert kept.state.name == "COMPLETE" and kept.params == stale.params
    assert kept.user_attrs["seed"] == 1 and kept.user_attrs["metrics"]
    assert not [t for t in trials if t.state.name in {"RUNNING", "WAITING"}]
    counted = [t for t in trials if t.state.name == "COMPLETE"]
    # the paused result arrives after the others refilled its slot: at most one over budget
    assert budget <= len(counted) <= budget + 1


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_only_trials_without_a_recent_heartbeat_are_failed(tmp_path: Path, kind: str) -> None:
    """Optuna's heartbeat (RDB), gansearch's ``heartbeat`` user attribute (journal, which has
    none), and trials nobody beats for (an older gansearch's): only the silent ones fail."""
    from optuna.trial import TrialState, create_trial

    from gansearch.config import load_study
    from gansearch.runner.heartbeat import HEARTBEAT_ATTR, HeartbeatKeeper, fail_stale
    from gansearch.runner.storage import Heartbeat, connect

    config = load_study(_study(tmp_path, trials=2))
    url = (
        f"sqlite:///{tmp_path / 'h.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'h.log'}"
    )
    shared = connect(config, url, heartbeat=Heartbeat(1, 2))
    storage = shared.storage
    study_id = storage.get_study_id_from_name(config.name)

    def running(**attrs: Any) -> int:
        return storage.create_new_trial(
            study_id, create_trial(state=TrialState.RUNNING, user_attrs=attrs)
        )

    legacy = running()  # created without any heartbeat
    silent = running(**{HEARTBEAT_ATTR: time.time() - 60}) if kind == "journal" else None
    with HeartbeatKeeper(shared) as keeper:
        alive = running(**{HEARTBEAT_ATTR: keeper.marker()})
        keeper.add(alive)
        assert fail_stale(shared) == ([storage.get_trial(silent).number] if silent else [])
        time.sleep(3)  # past the grace period: only the keeper's beats keep `alive` alive
        failed = fail_stale(shared)
    assert storage.get_trial(legacy).state == TrialState.FAIL
    assert failed == [storage.get_trial(legacy).number]
    assert storage.get_trial(alive).state == TrialState.RUNNING
