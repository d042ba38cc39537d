"""Known-answer tests for gansearch.evaluators.cost and macs: each expected count is a formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gansearch.evaluators.cost import (
    LatencyStats,
    StoredSize,
    bitops,
    count_params,
    measure_latency,
    stored_bytes,
    stored_bytes_by_layer,
)
from gansearch.evaluators.macs import count_macs, layer_macs


def _image(batch: int, channels: int, size: int) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------------
# MACs
# --------------------------------------------------------------------------------------


def test_conv2d_stride_padding() -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    # output 8 x 8 x 8 elements, each C_in * k * k MACs; bias not counted.
    assert count_macs(conv, _image(1, 3, 16)) == (8 * 8 * 8) * 3 * (3 * 3)


def test_conv2d_groups() -> None:
    conv = nn.Conv2d(8, 16, 3, stride=1, padding=1, groups=4)
    assert count_macs(conv, _image(1, 8, 10)) == (16 * 10 * 10) * (8 // 4) * (3 * 3)


def test_conv_transpose2d_counts_input_elements() -> None:
    deconv = nn.ConvTranspose2d(16, 8, 4, 2, 1)  # 4x4 -> 8x8
    expected = (16 * 4 * 4) * 8 * (4 * 4)
    assert count_macs(deconv, _image(1, 16, 4)) == expected
    # thop's Conv formula (output elements x C_in x k^2) would be stride^2 times more.
    thop_conv_formula = (8 * 8 * 8) * 16 * (4 * 4)
    assert thop_conv_formula == expected * 2**2


def test_conv_transpose2d_groups() -> None:
    deconv = nn.ConvTranspose2d(16, 8, 4, 2, 1, groups=4)
    assert count_macs(deconv, _image(1, 16, 4)) == (16 * 4 * 4) * (8 // 4) * (4 * 4)


def test_conv_transpose_1d_and_3d() -> None:
    deconv1d = nn.ConvTranspose1d(4, 6, 3, stride=2)
    assert count_macs(deconv1d, torch.randn(1, 4, 5)) == (4 * 5) * 6 * 3
    deconv3d = nn.ConvTranspose3d(2, 3, 2, stride=2)
    assert count_macs(deconv3d, torch.randn(1, 2, 3, 3, 3)) == (2 * 3**3) * 3 * 2**3


def test_linear() -> None:
    assert count_macs(nn.Linear(10, 20), torch.randn(1, 10)) == 10 * 20


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


def test_residual_add_counts_zero() -> None:
    channels, size = 4, 6
    one_conv = (channels * size * size) * channels * (3 * 3)
    block = _Residual(channels)
    assert count_macs(block, _image(1, channels, size)) == 2 * one_conv
    assert layer_macs(block, _image(1, channels, size)) == {
        "conv1": one_conv,
        "act": 0,
        "conv2": one_conv,
    }


def test_batchnorm_is_folded_instancenorm_is_counted() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    conv_macs = (8 * 5 * 5) * 3 * (3 * 3)
    with_bn = nn.Sequential(conv, nn.BatchNorm2d(8), nn.Tanh())
    assert layer_macs(with_bn, _image(1, 3, 5)) == {"0": conv_macs, "1": 0, "2": 0}
    # InstanceNorm cannot be folded: thop's count_normalization, 2 per input element.
    with_in = nn.Sequential(conv, nn.InstanceNorm2d(8))
    assert count_macs(with_in, _image(1, 3, 5)) == conv_macs + 2 * (8 * 5 * 5)


def test_norm_pool_upsample_hand_counts() -> None:
    # 2 ops per input element, 4 when affine; BatchNorm, PReLU and Softmax count 0.
    norms = nn.Sequential(
        nn.GroupNorm(2, 4),
        nn.GroupNorm(2, 4, affine=False),
        nn.InstanceNorm2d(4, affine=True),
        nn.BatchNorm2d(4),
        nn.PReLU(),
        nn.Softmax(dim=1),
    )
    elements = 4 * 3 * 3
    assert layer_macs(norms, _image(2, 4, 3)) == {
        "0": 4 * elements,
        "1": 2 * elements,
        "2": 4 * elements,
        "3": 0,
        "4": 0,
        "5": 0,
    }
    assert count_macs(nn.LayerNorm(6), torch.randn(2, 6)) == 4 * 6
    assert count_macs(nn.LayerNorm(6, elementwise_affine=False), torch.randn(2, 6)) == 2 * 6
    # 2 x 8 x 8 input: max pool 0; average pool 1 per output element (2 x 4 x 4);
    # adaptive average pool 8x8 -> 2x4 has a 4 x 2 window: (8 + 1) per output element.
    pools = nn.Sequential(nn.MaxPool2d(2), nn.Upsample(scale_factor=2), nn.AvgPool2d(2))
    assert layer_macs(pools, _image(1, 2, 8)) == {"0": 0, "1": 2 * 8 * 8, "2": 2 * 4 * 4}
    assert count_macs(nn.AdaptiveAvgPool2d((2, 4)), _image(1, 2, 8)) == (8 + 1) * 2 * 2 * 4
    # Upsampling: 1 (nearest) or 11 (bilinear) ops per output element of 2 x 6 x 6.
    bilinear = nn.Upsample(scale_factor=2, mode="bilinear")
    assert count_macs(bilinear, _image(1, 2, 3)) == 11 * 2 * 6 * 6


def test_macs_are_per_sample() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 3, 4, 2, 1))
    assert count_macs(model, _image(1, 3, 8)) == count_macs(model, _image(5, 3, 8))


class _QConv2d(nn.Conv2d):
    """A subclass thop's exact-type lookup would miss."""


class _QConvTranspose2d(nn.ConvTranspose2d):
    pass


def test_subclasses_are_counted_like_their_base() -> None:
    x = _image(1, 3, 16)
    assert count_macs(_QConv2d(3, 8, 3, 2, 1), x) == count_macs(nn.Conv2d(3, 8, 3, 2, 1), x)
    assert count_macs(_QConvTranspose2d(3, 8, 4, 2, 1), x) == (3 * 16 * 16) * 8 * (4 * 4)


def test_parametrized_conv_is_counted() -> None:
    conv = nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 8, 3, padding=1))
    assert count_macs(conv, _image(1, 3, 4)) == (8 * 4 * 4) * 3 * (3 * 3)


class _LowRankPair(nn.Sequential):
    """A protocol module that is itself a Sequential of known layers."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(10, 2, bias=False), nn.Linear(2, 10))

    def count_macs(self, x: tuple[torch.Tensor, ...], y: torch.Tensor) -> int:
        return 7 * x[0].shape[0]  # deliberately not 10*2 + 2*10, to show it is used


def test_count_macs_protocol_is_used_and_not_descended() -> None:
    model = nn.Sequential(_LowRankPair(), nn.Linear(10, 3))
    macs = layer_macs(model, torch.randn(4, 10))
    assert macs == {"0": 7, "1": 10 * 3}
    assert count_macs(model, torch.randn(4, 10)) == 7 + 10 * 3


def test_counting_leaves_model_unchanged() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ConvTranspose2d(4, 2, 2, 2))
    model.train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    count_macs(model, _image(2, 3, 6))
    bitops(model, _image(2, 3, 6))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)
    assert model.training
    for module in model.modules():
        assert not hasattr(module, "total_ops")
        assert not module._forward_hooks


def test_bad_example_input() -> None:
    with pytest.raises(ValueError, match="batch dimension"):
        count_macs(nn.Linear(1, 1), torch.tensor(1.0))
    with pytest.raises(TypeError, match="torch.Tensor"):
        count_macs(nn.Linear(1, 1), [1.0])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Params and stored bytes
# --------------------------------------------------------------------------------------


def _conv_bn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(4, 5, bias=False))


def test_count_params() -> None:
    expected = (8 * 3 * 3 * 3 + 8) + (8 + 8) + 4 * 5
    assert count_params(_conv_bn()) == expected


def test_stored_bytes_float32_and_float16() -> None:
    model = _conv_bn()
    running_stats = 2 * 8  # running_mean + running_var; num_batches_tracked excluded
    expected = 4 * (count_params(model) + running_stats)
    assert stored_bytes(model) == expected
    assert stored_bytes_by_layer(model)["1"] == 4 * (8 + 8 + running_stats)
    assert stored_bytes(model.half()) == expected // 2


class _Packed(nn.Module):
    """Reports its own encoded size, e.g. 4-bit weights plus a scale."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(16, 16)

    def stored_nbytes(self) -> int:
        return 16 * 16 // 2 + 4


def test_stored_size_module_reports_itself_and_is_not_descended() -> None:
    assert isinstance(_Packed(), StoredSize)
    model = nn.Sequential(_Packed(), nn.Linear(16, 2))
    by_layer = stored_bytes_by_layer(model)
    assert by_layer == {"0": 16 * 16 // 2 + 4, "1": 4 * (16 * 2 + 2)}
    assert stored_bytes(model) == sum(by_layer.values())


def test_shared_parameter_is_stored_once() -> None:
    first, second = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)
    second.weight = first.weight
    assert stored_bytes(nn.Sequential(first, second)) == 4 * 3 * 3


# --------------------------------------------------------------------------------------
# BitOps
# --------------------------------------------------------------------------------------


def test_bitops_float_model() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 3, 4, 2, 1))
    x = _image(1, 3, 8)
    assert bitops(model, x) == count_macs(model, x) * 32 * 32


def test_bitops_reads_bit_attributes() -> None:
    model = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 5))
    model[0].weight_bits = 4
    model[0].activation_bits = 8
    assert bitops(model, torch.randn(2, 10)) == 10 * 20 * 4 * 8 + 20 * 5 * 32 * 32


def test_bitops_on_protocol_module() -> None:
    pair = _LowRankPair()
    pair.weight_bits = 2
    assert bitops(nn.Sequential(pair), torch.randn(3, 10)) == 7 * 2 * 32


def test_bitops_rejects_bad_bits() -> None:
    model = nn.Linear(2, 2)
    model.weight_bits = 0
    with pytest.raises(ValueError, match="weight_bits"):
        bitops(model, torch.randn(1, 2))


# --------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------


def test_measure_latency() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    model.train()
    threads_before = torch.get_num_threads()
    stats = measure_latency(model, _image(2, 3, 8), runs=7, warmup=2, threads=1)
    assert isinstance(stats, LatencyStats)
    assert math.isfinite(stats.median_ms) and stats.median_ms > 0
    assert stats.min_ms <= stats.q25_ms <= stats.median_ms <= stats.q75_ms
    assert stats.iqr_ms == stats.q75_ms - stats.q25_ms
    assert (stats.runs, stats.threads, stats.batch_size) == (7, 1, 2)
    assert torch.get_num_threads() == threads_before
    assert model.training


@pytest.mark.parametrize(
    ("runs", "warmup", "threads", "name"),
    [(0, 0, 1, "runs"), (1, -1, 1, "warmup"), (1, 0, 0, "threads")],
)
def test_measure_latency_validates(runs: int, warmup: int, threads: int, name: str) -> None:
    threads_before = torch.get_num_threads()
    with pytest.raises(ValueError, match=f"`{name} >="):
        measure_latency(
            nn.Linear(2, 2), torch.randn(1, 2), runs=runs, warmup=warmup, threads=threads
        )
    assert torch.get_num_threads() == threads_before
