"""``gansearch bench distill``: distillation improves or keeps a fixed plan.

A tiny custom-model study (the toy generator, teacher-fidelity PSNR) benches two plans at
0 and 3 fine-tune steps: the 0-step figure must be the candidate the search would score,
and the kept state must never be worse than the start on the held-out measure it was
chosen by.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gansearch.bench.distill import bench_distill, bench_plans
from gansearch.candidates import CandidateEvaluator
from gansearch.config import load_study
from gansearch.errors import GansearchError

pytestmark = pytest.mark.usefixtures("one_thread")

STUDY = """\
name: toy-distill
output_dir: {out}
model:
  generator: tests.toy_models:toy_generator
  data: tests.test_space_cli:toy_images
  latent_shape: [8]
objectives: [teacher_psnr, stored_bytes]
evaluation:
  num_samples: 16
  seeds: [0, 1]
  batch_size: 16
  kid_subset_size: 8
  latency: {{runs: 3, warmup: 0}}
distill:
  steps: 10
  lr: 0.01
  batch_size: 8
  losses: {{pixel: 1.0}}
space:
  prune: {{min_keep: 0.25, keep_ratios: [0.5, 1.0]}}
  ofa: off
  bits: [2, 4, 8, 32]
  codebook: off
  lowrank: off
  activation_bits: off
"""
ROOT = Path(__file__).resolve().parents[1]
PLANS = ("int4", "prune30+int4")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench-distill")
    path = folder / "toy.yaml"
    path.write_text(STUDY.format(out=folder / "out"))
    return path


@pytest.fixture(scope="module")
def evaluator(study: Path, one_thread: None) -> CandidateEvaluator:
    return CandidateEvaluator(load_study(study))


@pytest.fixture(scope="module")
def report(evaluator: CandidateEvaluator, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench-distill-out") / "report.json"
    report = bench_distill(
        evaluator.config, steps=(3, 0), plans=PLANS, evaluator=evaluator, out=out
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    return report


def test_every_plan_has_each_step_count_and_one_before_run(report: dict) -> None:
    assert report["metric"] == "teacher_psnr" and report["steps"] == [0, 3]
    assert [row["name"] for row in report["plans"]] == list(PLANS)
    for row in report["plans"]:
        assert [(r["recipe"], r["steps"]) for r in row["runs"]] == [
            ("study", 0),
            ("study", 3),
            ("before", 3),
        ]
        assert row["stored_bytes_ratio"] > 1.0  # 4-bit weights store less than float32
    by_name = {row["name"]: row for row in report["plans"]}
    assert by_name["prune30+int4"]["macs_ratio"] > by_name["int4"]["macs_ratio"] == 1.0


def test_zero_steps_is_the_candidate_the_search_scores(report: dict, evaluator) -> None:
    plans = bench_plans(evaluator.space)
    for row in report["plans"]:
        searched = evaluator.score_plan(plans[row["name"]])  # search.finetune_steps: 0
        (zero,) = [r for r in row["runs"] if r["steps"] == 0]
        assert zero["quality"] == pytest.approx(searched.metrics["teacher_psnr"], rel=1e-9)
        assert zero["best_step"] == 0 and zero["seconds"] == 0.0


def test_distillation_improves_or_keeps_a_fixed_plan(report: dict, evaluator) -> None:
    plans = bench_plans(evaluator.space)
    for row in report["plans"]:
        (tuned,) = [r for r in row["runs"] if r["recipe"] == "study" and r["steps"] == 3]
        curve = dict(tuned["validation"])
        assert sorted(curve) == [0, 1, 2, 3]  # every step validated at 3 steps
        # the start is the unfine-tuned candidate on the study's held-out measure ...
        built = evaluator.build(plans[row["name"]])
        assert tuned["validation_start"] == pytest.approx(evaluator.validation(built), rel=1e-6)
        # ... and the kept state is the best of the curve, so never worse than the start
        assert tuned["validation_kept"] == min(curve.values()) <= tuned["validation_start"]
        assert curve[tuned["best_step"]] == tuned["validation_kept"]
        (before,) = [r for r in row["runs"] if r["recipe"] == "before"]
        assert before["selected_by"] == "teacher_l1"
        assert before["validation_kept"] <= before["validation_start"]


def test_lowrank_plan_needs_its_genes_and_unknown_plans_are_refused(evaluator) -> None:
    assert "lowrank50+int4" not in bench_plans(evaluator.space)  # space.lowrank is off
    with pytest.raises(GansearchError, match="unknown plan 'ofa25'"):
        bench_distill(evaluator.config, steps=(0,), plans=["ofa25"], evaluator=evaluator)
    with pytest.raises(GansearchError, match="unknown recipes"):
        bench_distill(evaluator.config, recipes=("after",), evaluator=evaluator)


def test_cli_prints_the_table_and_refuses_bad_steps(study: Path, run_cli) -> None:
    env = {"PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    args = ("bench", "distill", "--benchmark", str(study))
    done = run_cli(*args, "--steps", "0,2", "--plan", "int4", env=env)
    assert done.returncode == 0, done.stderr
    assert "int4" in done.stdout and "teacher_psnr @2" in done.stdout
    assert "before @2" in done.stdout
    bad = run_cli(*args, "--steps", "0,x", env=env)
    assert bad.returncode == 2 and "--steps" in bad.stderr
