from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def gansearch_executable() -> list[str]:
    """The installed console script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("gansearch")
    return [str(script)] if script.exists() else [shutil.which("gansearch") or "gansearch"]


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run the real ``gansearch`` console script in a subprocess."""

    def run(
        *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ):
        environment = {**os.environ, "GANSEARCH_CACHE": str(tmp_path / "cache"), **(env or {})}
        return subprocess.run(
            [*gansearch_executable(), *args],
            capture_output=True,
            text=True,
            cwd=cwd or ROOT,
            env=environment,
            timeout=timeout,
        )

    return run


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference-feature caches of tests never touch the user's ~/.cache."""
    monkeypatch.setenv("GANSEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "gansearch-cache"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one torch thread: on a 2-core machine, thread start-up
    dominates their convolutions. Modules opt in with ``pytestmark``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
