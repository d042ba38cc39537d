"""One rule for what counts as stored: exactly what ``state_dict()`` holds.

A user-style generator registers a large non-persistent buffer (a window table its
constructor computes) and a small persistent one. ``evaluate``'s count
(:func:`gansearch.evaluators.cost.stored_bytes` of the teacher), the search's count (the
same function on the compressed candidate, which reports
:func:`~gansearch.compress.serialize.encoded_state`) and the exported
``weights.safetensors`` must all leave the table out and keep the persistent buffer.
The CLI path (``gansearch evaluate`` against ``gansearch run``) is covered in
``test_teacher_fidelity_flow.py``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

import gansearch
from gansearch.compress import CompressionPlan, LayerPlan, apply_plan, describe, encoded_state
from gansearch.compress.artifact import MANIFEST_FILE, WEIGHTS_FILE
from gansearch.evaluators.cost import stored_bytes, stored_bytes_by_layer

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE = 64  # the non-persistent window table is TABLE x TABLE float32: 16 KiB


def window_table(size: int) -> torch.Tensor:
    """A 2-D Hann window, as a user's model computes it in its constructor."""
    window = torch.hann_window(size, periodic=False)
    return window[:, None] * window[None, :]


class WindowedGenerator(nn.Module):
    """Latent (N, 8) -> image (N, 1, 8, 8), with a window table it never needs to store."""

    latent_shape = (8,)

    def __init__(self, persistent_table: bool = False) -> None:
        super().__init__()
        self.project = nn.Linear(8, 8 * 4 * 4)
        self.up = nn.ConvTranspose2d(8, 8, 4, 2, 1)
        self.norm = nn.BatchNorm2d(8)
        self.out = nn.Conv2d(8, 1, 3, 1, 1)
        self.register_buffer("window", window_table(TABLE), persistent=persistent_table)
        self.register_buffer("gain", torch.ones(1, 1, 8, 8))  # persistent: stored

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.project(z)).view(z.shape[0], 8, 4, 4)
        h = torch.relu(self.norm(self.up(h)))
        return torch.tanh(self.out(h) * self.gain + self.window[::8, ::8])


# Hand count of the stored float32 elements: project 8*128 + 128, up 8*8*16 + 8,
# norm weight/bias/running mean/running var 4*8 (num_batches_tracked is not stored),
# out 8*9 + 1, gain 64. The 64 x 64 window table is not stored.
STORED_ELEMENTS = (8 * 128 + 128) + (8 * 8 * 16 + 8) + 4 * 8 + (8 * 9 + 1) + 64
TABLE_BYTES = TABLE * TABLE * 4
EXAMPLE = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))


def _teacher(persistent_table: bool = False) -> WindowedGenerator:
    generator = torch.Generator().manual_seed(0)
    model = WindowedGenerator(persistent_table)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        model.gain.copy_(torch.rand(model.gain.shape, generator=generator) + 0.5)
        model.norm.running_mean.copy_(torch.randn(8, generator=generator) * 0.1)
        model.norm.running_var.copy_(torch.rand(8, generator=generator) + 0.5)
    return model.eval()


def _state_dict_bytes(model: nn.Module) -> int:
    """The rule written out independently: the bytes of state_dict(), each tensor once."""
    unique = {
        id(t): t
        for name, t in model.state_dict(keep_vars=True).items()
        if not name.endswith("num_batches_tracked")
    }
    return sum(t.numel() * t.element_size() for t in unique.values())


def _payload_nbytes(file: Path) -> int:
    """Bytes of a safetensors file after its 8-byte header length and JSON header."""
    data = file.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    return len(data) - 8 - header_length


def test_stored_bytes_is_the_state_dict() -> None:
    teacher = _teacher()
    assert "window" not in teacher.state_dict() and "gain" in teacher.state_dict()
    assert stored_bytes(teacher) == 4 * STORED_ELEMENTS == _state_dict_bytes(teacher)
    # the root module holds only its persistent buffer
    assert stored_bytes_by_layer(teacher)[""] == 4 * 64


def test_the_rule_follows_persistence_not_names() -> None:
    # The same table registered persistent is in state_dict(), so it is stored.
    persistent = _teacher(persistent_table=True)
    assert stored_bytes(persistent) == 4 * STORED_ELEMENTS + TABLE_BYTES
    assert stored_bytes(persistent) == _state_dict_bytes(persistent)


def test_a_shared_parameter_is_stored_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight

    assert stored_bytes(Tied()) == 4 * 16


def test_search_counts_what_evaluate_counts() -> None:
    teacher = _teacher()
    structure = describe(teacher, EXAMPLE)
    identity = apply_plan(
        teacher, CompressionPlan.identity(structure), EXAMPLE, structure=structure
    )
    state = encoded_state(identity)
    assert not any(name.endswith("window") for name in state)
    assert any(name.endswith("gain") for name in state)
    # the search scores the identity candidate; `gansearch evaluate` scores the teacher
    assert stored_bytes(identity) == identity.stored_nbytes() == stored_bytes(teacher)


@pytest.mark.parametrize("weight", ["float32", "int8"])
def test_export_writes_what_the_search_counts(tmp_path: Path, weight: str) -> None:
    teacher = _teacher()
    structure = describe(teacher, EXAMPLE)
    plan = CompressionPlan(
        layers={layer.name: LayerPlan(weight=weight) for layer in structure.layers}
    )
    compressed = apply_plan(teacher, plan, EXAMPLE, structure=structure)
    path = gansearch.export(compressed, tmp_path / weight, example_input=EXAMPLE)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    with safe_open(str(path / WEIGHTS_FILE), framework="pt") as weights:
        names = set(weights.keys())
    assert "gain" in names and "window" not in names
    assert _payload_nbytes(path / WEIGHTS_FILE) == manifest["stored_nbytes"]
    assert manifest["stored_nbytes"] == stored_bytes(compressed)
    if weight == "float32":
        assert manifest["stored_nbytes"] == stored_bytes(teacher) == 4 * STORED_ELEMENTS
    # the table is rebuilt by the constructor, the persistent buffer comes from the file
    loaded = gansearch.load(path, trust=[f"{__name__}:WindowedGenerator"])
    torch.testing.assert_close(loaded.module.window, window_table(TABLE), rtol=0, atol=0)
    torch.testing.assert_close(loaded.module.gain, teacher.gain, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(EXAMPLE), compressed(EXAMPLE), rtol=0, atol=1e-6)
