"""``gansearch space``: the genes, groups, exclusions and size of a study's space."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from gansearch.cli.space import space
from gansearch.space_report import masks_allowed

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "studies" / "digits.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_images() -> torch.Tensor:
    """Data factory of the toy study (real images in the toy generator's range)."""
    return torch.tanh(torch.randn((32, 1, 8, 8), generator=torch.Generator().manual_seed(0)))


TOY_STUDY = """\
name: toy-space
model:
  generator: tests.toy_models:toy_generator
  data: tests.test_space_cli:toy_images
  latent_shape: [8]
objectives: [stored_bytes]
evaluation:
  num_samples: 16
  seeds: [0]
  batch_size: 16
  kid_subset_size: 8
  latency: {runs: 3, warmup: 0}
space:
  prune: {min_keep: 0.5, keep_ratios: [0.5, 1.0]}
  ofa: off
  bits: [8, 32]
  codebook: off
  lowrank: off
  activation_bits: off
"""


@pytest.fixture
def toy_study(tmp_path: Path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_STUDY)
    return path


def _json(study: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    space(study, as_json=True)
    return json.loads(capsys.readouterr().out)


def test_digits_genes_and_groups_are_the_searched_space(capsys) -> None:
    from gansearch.benchmarks import load_benchmark
    from gansearch.compress.groups import describe
    from gansearch.config import load_study
    from gansearch.spaces.joint import JointSpace

    report = _json(DIGITS, capsys)
    config = load_study(DIGITS)
    benchmark = load_benchmark(config)
    teacher, example = benchmark.teacher.eval(), benchmark.example_input(2)
    searched = JointSpace.from_generator(teacher, config.space, example)
    assert [gene["name"] for gene in report["genes"]] == list(searched.genes.names)

    structure = describe(teacher, example)
    assert [(g["name"], g["channels"]) for g in report["groups"]] == [
        (g.name, g.num_channels) for g in structure.groups
    ]
    assert [(g["name"], g["reason"]) for g in report["excluded_groups"]] == [
        (g.name, g.reason) for g in structure.excluded_groups
    ]
    assert report["size"]["genes"] == len(searched.genes.genes)
    assert report["techniques"]["prune"] and report["techniques"]["ofa"]
    assert not report["techniques"]["activation_bits"]


def test_toy_space_size_is_the_hand_counted_product(toy_study: Path, capsys) -> None:
    report = _json(toy_study, capsys)
    # Groups of the toy generator: up (12 channels), res.conv1 (12), side (6); min_keep 0.5
    # keeps >= 6, 6, 3. Masks keeping >= 6 of 12: (2^12 + C(12, 6)) / 2 = 2510; >= 3 of 6:
    # (2^6 + C(6, 3)) / 2 = 42. Six layers each with bits in {8, 32}; nothing else varies.
    expected = 2510 * 2510 * 42 * 2**6
    assert report["size"]["genomes"] == expected
    assert report["size"]["log10_genomes"] == pytest.approx(math.log10(expected), abs=1e-3)
    assert report["size"]["genes"] == 3 + 6
    masks = {
        g["name"]: (g["length"], g["min_keep"]) for g in report["genes"] if g["kind"] == "mask"
    }
    assert masks == {"mask:up": (12, 6), "mask:res.conv1": (12, 6), "mask:side": (6, 3)}
    assert report["techniques"] == {
        "prune": True,
        "ofa": False,
        "bits": True,
        "codebook": False,
        "lowrank": False,
        "activation_bits": False,
        "norm_dtype": False,
    }
    assert report["fixed"]["codebook"] == 0


def test_masks_allowed_counts_subsets() -> None:
    assert masks_allowed(4, 1) == 15
    assert masks_allowed(4, 4) == 1
    assert masks_allowed(12, 6) == 2510


def test_toy_genes_are_those_the_candidate_evaluator_searches(toy_study: Path, capsys) -> None:
    from gansearch.candidates import CandidateEvaluator
    from gansearch.config import load_study

    report = _json(toy_study, capsys)
    evaluator = CandidateEvaluator(load_study(toy_study))
    assert [gene["name"] for gene in report["genes"]] == list(evaluator.space.genes.names)


def test_table_names_each_excluded_group_and_its_reason(toy_study: Path, capsys) -> None:
    report = _json(toy_study, capsys)
    assert report["excluded_groups"], "the toy generator's reshaped projection is excluded"
    space(toy_study, as_json=False)
    out = capsys.readouterr().out
    for group in report["excluded_groups"]:
        assert f"{group['name']} ({group['channels']} channels): {group['reason']}" in out
    for gene in report["genes"]:
        assert gene["name"] in out
    assert str(report["size"]["genomes"]) in out


def test_a_bad_study_file_is_one_line_and_exit_2(tmp_path: Path, run_cli) -> None:
    study = tmp_path / "bad.yaml"
    study.write_text(TOY_STUDY.replace("  ofa: off\n", "  ofa: off\n  pruning: on\n"))
    result = run_cli("space", str(study))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gansearch: error:"), result.stderr
    assert "pruning" in lines[0]
    assert result.stdout == ""
