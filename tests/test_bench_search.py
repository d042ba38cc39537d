"""`bench_search` on a tiny budget and a cheap protocol: the report's structure."""

from __future__ import annotations

from pathlib import Path

import pytest

from gansearch.bench.search import SEARCH_STUDIES, bench_search
from gansearch.config import StudyConfig, load_study
from gansearch.errors import GansearchError
from gansearch.pareto import reference_point

ROOT = Path(__file__).resolve().parents[1]


def cheap(path: str) -> StudyConfig:
    config = load_study(ROOT / path)
    evaluation = config.evaluation.model_copy(
        update={
            "num_samples": 64,
            "seeds": (0,),
            "kid_subsets": 2,
            "kid_subset_size": 32,
            "latency": config.evaluation.latency.model_copy(update={"runs": 3, "warmup": 0}),
        }
    )
    return config.model_copy(update={"evaluation": evaluation})


@pytest.mark.slow
def test_bench_search_report(tmp_path: Path) -> None:
    configs = [cheap(path) for path in SEARCH_STUDIES[:2]]
    report = bench_search(tmp_path, configs, trials=3, seed=0)

    assert [row["study"] for row in report["studies"]] == ["digits", "digits-ga-prune"]
    assert report["reference_point"]["teacher_relative_losses"] == pytest.approx(
        reference_point(("fid", "stored_bytes", "macs")).tolist()
    )
    for row in report["studies"]:
        assert row["trials"] == 3
        assert 0 <= row["front_size"] <= row["feasible"] <= row["trials"] - row["failures"]
        assert row["hypervolume"] >= 0.0
        assert Path(row["storage"].removeprefix("sqlite:///")).is_file()
        # the reference plans are enqueued first, so the teacher itself (ratio 1) is measured
        assert row["best_stored_bytes"]["stored_bytes"] >= 1.0
        assert row["best_macs"]["macs"] >= 1.0
    goals = report["goals"]
    assert goals["joint_hypervolume_beats_every_single"]["met"] == (
        report["studies"][0]["hypervolume"] > report["studies"][1]["hypervolume"]
    )
    assert isinstance(goals["compression"]["met"], bool)
    assert Path(report["plot"]).is_file()
    # the studies' own folder is untouched: everything went under tmp_path
    assert {p.name for p in tmp_path.iterdir()} == {"digits", "digits-ga-prune", "bench-search.png"}

    with pytest.raises(GansearchError, match="exists"):
        bench_search(tmp_path, configs, trials=3, seed=0)


def test_bench_search_needs_one_budget(tmp_path: Path) -> None:
    joint, single = cheap(SEARCH_STUDIES[0]), cheap(SEARCH_STUDIES[1])
    other = single.model_copy(update={"search": single.search.model_copy(update={"trials": 7})})
    with pytest.raises(GansearchError, match="disagree on trials"):
        bench_search(tmp_path, [joint, other])
