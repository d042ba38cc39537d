"""The benchmarks' own logic: goals from data, layers chosen from the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gansearch.bench.goals import Goals
from gansearch.bench.transforms import heaviest_layers
from gansearch.compress import describe
from gansearch.zoo.models import DCGANGenerator

GOALS = {
    "about": "prose",
    "scoring_overhead": 1.3,
    "quality_factor": 1.1,
    "stored_bytes_ratio": 50,
    "macs_ratio": 10.0,
    "engine_speedup": 1.7,
    "engine_overhead": 0.1,
    "photos_stored_bytes_ratio": 40,
    "photos_macs_ratio": 12.0,
}


def test_goals_from_dict() -> None:
    goals = Goals.from_dict(GOALS)
    assert goals.stored_bytes_ratio == 50.0 and isinstance(goals.stored_bytes_ratio, float)
    assert goals.engine_overhead == 0.1
    assert goals.compression("photos") == (40.0, 12.0)
    assert goals.compression("digits") == goals.compression(None) == (50.0, 10.0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"macs_ratio_typo": 1.0}, "must hold exactly the goals"),
        ({"macs_ratio": None}, "`macs_ratio` must be a positive number"),
        ({"macs_ratio": -1.0}, "`macs_ratio` must be a positive number"),
        ({"macs_ratio": True}, "`macs_ratio` must be a positive number"),
    ],
)
def test_goals_reject_bad_data(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Goals.from_dict({**GOALS, **change})


def test_low_rank_layers_are_the_dcgans_inner_transposed_convs() -> None:
    """Derived from MACs, not names: the two ConvTranspose2d whose MACs dominate."""
    teacher = DCGANGenerator().eval()
    example = torch.zeros(1, teacher.latent_dim, 1, 1)
    structure = describe(teacher, example)
    assert heaviest_layers(teacher, structure, example, 2) == ("net.3", "net.6")
    assert heaviest_layers(teacher, structure, example, 1) == ("net.3",)  # tie: module order
    with pytest.raises(ValueError, match="count"):
        heaviest_layers(teacher, structure, example, 0)


def test_low_rank_layers_follow_the_model() -> None:
    """A different model gets its own heaviest layers, in module order."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 3*4*9 = 108 MACs per pixel
        nn.ReLU(),
        nn.Conv2d(4, 32, 3, padding=1),  # 1152
        nn.ReLU(),
        nn.Conv2d(32, 16, 3, padding=1),  # 4608
        nn.ReLU(),
        nn.Conv2d(16, 3, 1),  # 48
    ).eval()
    example = torch.zeros(1, 3, 8, 8)
    structure = describe(model, example)
    assert heaviest_layers(model, structure, example, 2) == ("2", "4")
