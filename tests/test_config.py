"""Study files: validation errors are one clear line naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gansearch.config import load_study, parse_study
from gansearch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_shipped_study_is_valid() -> None:
    config = load_study(ROOT / "studies" / "digits.yaml")
    assert config.benchmark == "digits"
    assert config.objectives == ("fid", "stored_bytes", "macs")
    assert config.evaluation.seeds == (0, 1, 2)


def test_config_is_frozen() -> None:
    config = load_study(ROOT / "studies" / "digits.yaml")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own frozen error type
        config.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\nbenchmark: digits\nevaluation: {num_sampels: 10}\n",
            "unknown key `evaluation.num_sampels`",
        ),
        ("name: x\nbenchmark: digits\nseed: many\n", "`seed`"),
        ("name: x\nbenchmark: digits\nobjectives: [fid, speed]\n", "unknown metric 'speed'"),
        ("name: x\n", "exactly one of `benchmark`"),
        ("benchmark: digits\n", "missing required key `name`"),
        ("name: x\nbenchmark: digits\nevaluation: {seeds: [1, 1]}\n", "no repeats"),
        (
            "name: x\nmodel: {generator: nocolon, data: a:b, latent_shape: [4]}\n",
            "package.module:function",
        ),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: x\nbenchmark: [digits\n", "malformed YAML at line"),
    ],
)
def test_bad_study_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_study(_write(tmp_path, text))
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
    assert str(tmp_path / "study.yaml") in message


def test_missing_study_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="study file not found"):
        load_study(tmp_path / "nope.yaml")


def test_seed_zero_is_kept() -> None:
    data = yaml.safe_load((ROOT / "studies" / "digits.yaml").read_text())
    assert parse_study({**data, "seed": 0}).seed == 0
