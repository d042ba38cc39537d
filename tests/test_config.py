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


def _digits(**changes: object) -> dict:
    data = yaml.safe_load((ROOT / "studies" / "digits.yaml").read_text())
    return {**data, **changes}


def test_seed_bounds_are_numpy_and_torch_ranges() -> None:
    assert parse_study(_digits(seed=2**32 - 1)).seed == 2**32 - 1
    for bad in (-1, 2**32):
        with pytest.raises(ConfigError, match=r"a seed must be an integer in \[0, 2\*\*32\)"):
            parse_study(_digits(seed=bad))


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps", "xpu:0"])
def test_torch_device_syntax_is_accepted_without_importing_torch(device: str) -> None:
    assert parse_study(_digits(device=device)).device == device


def test_kid_subset_size_defaults_to_at_most_num_samples() -> None:
    small = parse_study(_digits(evaluation={"num_samples": 16}))
    assert small.evaluation.kid_subset_size == 16
    assert parse_study(_digits(evaluation={})).evaluation.kid_subset_size == 500
    explicit = parse_study(_digits(evaluation={"num_samples": 64, "kid_subset_size": 40}))
    assert explicit.evaluation.kid_subset_size == 40
    with pytest.raises(ConfigError, match="kid_subset_size <= num_samples"):
        parse_study(_digits(evaluation={"num_samples": 16, "kid_subset_size": 17}))


def test_constraints_in_bytes_are_read_and_bounds_must_be_finite() -> None:
    from gansearch.evaluators.objectives import Constraint

    assert Constraint.parse("stored_bytes <= 64B").bound == 64
    assert Constraint.parse("stored_bytes <= 2KB").bound == 2048
    with pytest.raises(ValueError, match="not a finite number"):
        Constraint.parse("stored_bytes <= 1e999")


def test_measured_metrics_follow_what_the_study_provides() -> None:
    digits = parse_study(_digits())
    assert {"fid", "kid", "is", "stored_bytes", "teacher_l1"} <= digits.measured_metrics()
    assert not {"psnr", "ssim", "fid_inception"} & digits.measured_metrics()
    custom = parse_study(
        {
            "name": "c",
            "objectives": ["stored_bytes"],
            "model": {"generator": "a:b", "data": "a:c", "latent_shape": [4]},
        }
    )
    assert "fid" not in custom.measured_metrics()
    with pytest.raises(ConfigError, match="constraint|constrains 'fid'"):
        parse_study(
            {
                "name": "c",
                "objectives": ["stored_bytes"],
                "model": {"generator": "a:b", "data": "a:c", "latent_shape": [4]},
                "search": {"constraints": ["fid <= 1.1 * teacher"]},
            }
        )


def test_config_import_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, gansearch.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
