"""``gansearch sensitivity``: single-choice quality losses, their cache, heatmap and use.

A tiny custom-model study (the toy generator, teacher-fidelity PSNR, pruning at 0.5 and
weight bits 2 / 8 / 32) is measured once per module; known orderings (2-bit loses more
than 8-bit on the same layer), the cache key, the guided plans' budget arithmetic and the
search hook are checked on it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gansearch.candidates import CandidateEvaluator, study_space
from gansearch.compress.plan import CompressionPlan, validate
from gansearch.config import load_study
from gansearch.sensitivity import (
    SensitivityEntry,
    SensitivityTable,
    guided_plans,
    harmful_choices,
    identity_params,
    plot_heatmap,
    quality_budget,
    read_cached,
)
from gansearch.sensitivity_measure import (
    cache_key,
    cache_path,
    sensitivity_table,
    single_choice_plan,
    skipped_families,
)
from tests.toy_models import toy_generator

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("project", "up", "res.conv1", "res.conv2", "side", "out")
GROUPS = ("up", "res.conv1", "side")

pytestmark = pytest.mark.usefixtures("one_thread")

STUDY = """\
name: toy-sensitivity
output_dir: {out}
model:
  generator: tests.toy_models:toy_generator
  data: tests.test_space_cli:toy_images
  latent_shape: [8]
objectives: [teacher_psnr, stored_bytes]
evaluation:
  num_samples: 16
  seeds: {seeds}
  batch_size: 16
  kid_subset_size: 8
  latency: {{runs: 3, warmup: 0}}
search:
  constraints: ["teacher_psnr >= 30"]
  strategy: optuna
space:
  prune: {{min_keep: 0.5, keep_ratios: [0.5, 1.0]}}
  ofa: off
  bits: [2, 8, 32]
  codebook: off
  lowrank: off
  activation_bits: off
"""


def write_study(folder: Path, seeds: str = "[0, 1]") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "toy.yaml"
    path.write_text(STUDY.format(out=folder / "out", seeds=seeds))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("sensitivity"))


@pytest.fixture(scope="module")
def measured(study: Path, one_thread: None) -> tuple[SensitivityTable, CandidateEvaluator]:
    evaluator = CandidateEvaluator(load_study(study))
    table, cached = sensitivity_table(evaluator.config, evaluator=evaluator)
    assert not cached
    return table, evaluator


def entry(table: SensitivityTable, gene: str, value: object) -> SensitivityEntry:
    (found,) = [e for e in table.entries if e.gene == gene and e.value == value]
    return found


# --------------------------------------------------------------------------- the table


def test_every_gene_value_has_one_entry_and_the_identity_ones_lose_nothing(measured) -> None:
    table, evaluator = measured
    assert table.metric == "teacher_psnr" and table.teacher["teacher_psnr"] == 100.0
    # 3 groups x 2 keep counts + 6 layers x 3 bit widths
    assert len(table.entries) == 3 * 2 + 6 * 3
    identity = [e for e in table.entries if e.identity]
    assert {(e.gene, e.value) for e in identity} == {
        *((f"mask:{g}", n) for g, n in zip(GROUPS, (12, 12, 6), strict=True)),
        *((f"bits:{layer}", 32) for layer in LAYERS),
    }
    assert all(e.delta == 0.0 and set(e.saved.values()) == {0.0} for e in identity)
    # The identity entries reuse the teacher's score: scoring the identity plan again
    # through the study's own path gives the same quality.
    again = evaluator.score_plan(CompressionPlan.identity(evaluator.space.structure))
    assert again.metrics["teacher_psnr"] == table.teacher["teacher_psnr"]
    others = [e for e in table.entries if not e.identity]
    assert all(e.failure is None and e.delta > 0 and e.saved["stored_bytes"] > 0 for e in others)


def test_two_bits_lose_more_than_eight_bits_on_every_layer(measured) -> None:
    table, _ = measured
    for layer in LAYERS:
        int2, int8 = entry(table, f"bits:{layer}", 2), entry(table, f"bits:{layer}", 8)
        assert int2.delta > int8.delta > 0, layer
        assert int2.saved["stored_bytes"] > int8.saved["stored_bytes"] > 0, layer
        assert int2.label == "int2" and int8.label == "int8"


def test_single_choice_plans_change_exactly_one_thing(measured) -> None:
    _, evaluator = measured
    space = evaluator.space
    identity = CompressionPlan.identity(space.structure)
    base = identity_params(space)
    assert space.decode(base) == identity
    plan = single_choice_plan(space, base, "bits:side", 2)
    assert plan.layers["side"].weight == "int2"
    assert replace(plan, layers={**plan.layers, "side": identity.layers["side"]}) == identity
    pruned = single_choice_plan(space, base, "mask:up", space.genes["mask:up"].top(6))
    assert sum(pruned.masks["up"]) == 6 and pruned.layers == identity.layers


def test_breaks_and_harmful_choices_follow_the_constraint(measured) -> None:
    table, _ = measured
    for e in table.entries:
        assert bool(e.breaks) == (e.quality < 30), (e.gene, e.value, e.quality)
        assert e.breaks in ((), ("teacher_psnr >= 30",))
    harmful = harmful_choices(table)
    assert harmful == [(e.gene, e.value) for e in table.entries if e.breaks]
    assert harmful, "halving a group of the random toy generator costs far more than 70 dB"


# --------------------------------------------------------------------------- the cache


def test_the_cache_is_reused_and_invalidated_by_the_protocol(
    measured, study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table, _ = measured
    config = load_study(study)
    path = cache_path(config)
    assert read_cached(path, table.key) == table
    calls = []
    original = CandidateEvaluator.score_plan

    def counting(self, plan):
        calls.append(plan)
        return original(self, plan)

    monkeypatch.setattr(CandidateEvaluator, "score_plan", counting)
    again, cached = sensitivity_table(config)
    assert cached and again == table and calls == []

    other = load_study(write_study(tmp_path, seeds="[0]"))  # one evaluation seed, not two
    moved = cache_path(other)
    moved.parent.mkdir(parents=True)
    moved.write_bytes(path.read_bytes())
    assert cache_key(other, toy_generator()) != table.key
    remeasured, cached = sensitivity_table(other)
    assert not cached and calls, "a changed protocol measures again"
    assert read_cached(moved, remeasured.key) == remeasured
    assert read_cached(moved, table.key) is None  # the old key no longer matches


def test_the_key_follows_the_teachers_weights(study: Path) -> None:
    config = load_study(study)
    teacher = toy_generator()
    key = cache_key(config, teacher)
    assert cache_key(config, toy_generator()) == key
    with torch.no_grad():
        teacher.out.bias.add_(1e-6)
    assert cache_key(config, teacher) != key


# --------------------------------------------------------------------------- search use


def test_guided_plans_decode_and_respect_the_budget(measured) -> None:
    table, evaluator = measured
    space = evaluator.space
    budget = quality_budget(table)
    assert budget == 70.0  # teacher_psnr >= 30 against the teacher's 100 dB
    allowed = table.additive(budget)
    assert allowed == pytest.approx(1e-3 - 1e-10)  # PSNR is summed as MSE / range^2
    plans = guided_plans(table, space, budget, n=3)
    assert 1 <= len(plans) <= 3
    assert len({p.plan.to_json() for p in plans}) == len(plans)
    harmful = set(harmful_choices(table))
    units = len({e.unit for e in table.entries if not e.identity and not e.breaks})
    for plan in plans:
        assert space.genes.contains(plan.params)
        assert space.decode(plan.params) == plan.plan
        validate(plan.plan, space.structure)
        assert plan.plan != CompressionPlan.identity(space.structure)
        spent = 0.0
        for gene, value in plan.choices:
            assert (gene, value) not in harmful
            cost = table.additive(entry(table, gene, value).delta)
            assert cost <= plan.share * allowed
            spent += cost
        assert plan.predicted == pytest.approx(spent / allowed)
        assert plan.predicted <= plan.share * units + 1e-9
    assert plans[0].share == pytest.approx(1 / units)


def test_guided_plans_pick_the_cheapest_value_within_each_share(measured) -> None:
    _, evaluator = measured
    space = evaluator.space

    def bits(layer: str, value: int, delta: float, saved: float) -> SensitivityEntry:
        return SensitivityEntry(
            f"bits:{layer}", value, f"int{value}", 10 + delta, delta, 0.0, {"stored_bytes": saved}
        )

    table = SensitivityTable(
        key="k",
        metric="fid",
        direction="minimize",
        teacher={"fid": 10.0, "stored_bytes": 100.0},
        teacher_spread=0.0,
        constraints=("fid <= 1.1 * teacher",),
        entries=(
            bits("up", 2, 0.8, 30.0),
            bits("up", 8, 0.3, 20.0),
            bits("side", 2, 0.4, 10.0),
            bits("side", 8, 0.1, 5.0),
        ),
    )
    budget = quality_budget(table)
    assert budget == pytest.approx(1.0)  # 1.1 x 10 - 10
    first, second = guided_plans(table, space, budget, n=3)
    # share 1/2: up may lose 0.5 -> int8 (0.3); side -> int2 (0.4)
    assert first.choices == (("bits:up", 8), ("bits:side", 2))
    assert first.predicted == pytest.approx(0.7)
    assert first.plan.layers["up"].weight == "int8" and first.plan.layers["side"].weight == "int2"
    # share 2/2: both at 2 bits; share 4/2 gives the same plan and is dropped
    assert second.choices == (("bits:up", 2), ("bits:side", 2))
    assert second.plan.layers["out"].weight == "float32"
    assert quality_budget(replace(table, constraints=())) is None
    assert guided_plans(table, space, None) == []


def test_an_ofa_study_reuses_the_table_and_its_guided_plans_use_masks(measured, study) -> None:
    from gansearch.benchmarks import load_benchmark
    from gansearch.spaces.config import OfaSpace
    from gansearch.spaces.joint import SOURCE

    table, _ = measured
    config = load_study(study)
    ofa = config.model_copy(
        update={"space": config.space.model_copy(update={"ofa": OfaSpace(widths=(0.5, 1.0))})}
    )
    assert skipped_families(ofa) and not skipped_families(config)
    again, cached = sensitivity_table(ofa)  # no supernet needed: widths are not measured
    assert cached and again == table
    space = study_space(load_benchmark(ofa), ofa)
    assert "width:up" in space.genes.names
    plans = guided_plans(table, space, quality_budget(table))
    assert plans
    for plan in plans:
        assert space.genes.contains(plan.params) and plan.params[SOURCE] == "mask"
        assert plan.plan.widths is None and space.decode(plan.params) == plan.plan


def test_search_sensitivity_enqueues_the_guided_plans_first(study: Path, tmp_path: Path) -> None:
    from gansearch.study import run_study

    config = load_study(study)
    config = config.model_copy(
        update={
            "output_dir": tmp_path / "out",
            "search": config.search.model_copy(update={"sensitivity": True}),
        }
    )
    evaluator = CandidateEvaluator(config)
    table, _ = sensitivity_table(config, evaluator=evaluator)
    expected = [p.plan.to_json() for p in guided_plans(table, evaluator.space, 70.0)]
    seen: list[str] = []
    run_study(
        config,
        trials=len(expected),
        evaluator=evaluator,
        on_result=lambda result, trial: seen.append(result.plan_json),
    )
    assert seen == expected


# --------------------------------------------------------------------------- output


def test_the_heatmap_is_a_png(measured, tmp_path: Path) -> None:
    table, _ = measured
    path = tmp_path / "deep" / "heat.png"
    plot_heatmap(table, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 200


def test_cli_prints_the_table_and_writes_the_plot(measured, study: Path, tmp_path: Path, run_cli):
    table, _ = measured
    png = tmp_path / "heat.png"
    result = run_cli(
        "sensitivity",
        str(study),
        "--plot",
        str(png),
        env={"PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "sensitivity of teacher_psnr (cached)" in result.stdout
    for label in ("int2", "int8", "keep 0.50", "res.conv2"):
        assert label in result.stdout
    assert "allowed loss: 70" in result.stdout
    assert "harmful alone" in result.stdout and "mask:up=6" in result.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(read_cached(cache_path(load_study(study)), table.key).entries) == len(table.entries)


def test_cli_json_has_the_table(measured, study: Path, run_cli) -> None:
    import json

    table, _ = measured
    result = run_cli(
        "sensitivity", str(study), "--json", env={"PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["cached"] is True and payload["budget"] == 70.0
    assert SensitivityTable.from_dict(payload["table"]) == table
    assert all(not math.isnan(g["predicted"]) for g in payload["guided"])


def test_a_bad_study_is_one_line_and_exit_2(tmp_path: Path, run_cli) -> None:
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace("  ofa: off\n", "  ofa: off\n  pruning: on\n"))
    result = run_cli("sensitivity", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gansearch: error:"), result.stderr
    assert "pruning" in lines[0] and result.stdout == ""
