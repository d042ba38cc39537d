"""One distribution: spaces/, search/ and evaluators/ install only under gansearch.*"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = out.glob("gansearch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_no_top_level_subpackages(wheel_names: list[str]) -> None:
    top_level = {name.split("/")[0] for name in wheel_names}
    assert not top_level & {"spaces", "search", "evaluators"}, sorted(top_level)
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"gansearch"}


def test_subpackages_installed_under_gansearch(wheel_names: list[str]) -> None:
    for package in ("spaces", "search", "evaluators"):
        assert f"gansearch/{package}/__init__.py" in wheel_names
    assert "gansearch/evaluators/quality.py" in wheel_names


def test_every_package_ships(wheel_names: list[str]) -> None:
    """No package of the source tree is missing from pyproject's `packages` list."""
    for init in sorted((ROOT / "gansearch").rglob("__init__.py")):
        assert init.relative_to(ROOT).as_posix() in wheel_names


def test_bench_goals_ship_and_load(wheel_names: list[str]) -> None:
    """The benchmarks' goals are package data, read through importlib.resources."""
    import json

    from gansearch.bench.goals import GOALS_FILE, Goals, load_goals

    assert f"gansearch/bench/{GOALS_FILE}" in wheel_names
    data = json.loads((ROOT / "gansearch" / "bench" / GOALS_FILE).read_text())
    assert load_goals() == Goals.from_dict(data)
    assert load_goals().quality_factor == data["quality_factor"]


def test_committed_weights_ship_in_the_wheel(wheel_names: list[str]) -> None:
    for name in ("generator", "discriminator", "features"):
        assert f"gansearch/zoo/weights/digits/{name}.safetensors" in wheel_names


def test_installed_environment_has_no_top_level_spaces(tmp_path: Path) -> None:
    """From outside the checkout, `import spaces` must not resolve to this project."""
    code = (
        "import importlib.util, json;"
        "print(json.dumps({n: getattr(importlib.util.find_spec(n), 'origin', None) "
        "for n in ('spaces', 'search', 'evaluators')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert str(ROOT) not in result.stdout, result.stdout
