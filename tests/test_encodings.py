"""Weight encodings (exact sizes, bit packing) and fake quantisation."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from gansearch.compress.actquant import (
    ActivationQuantizer,
    attach_activation_quant,
    calibrate_activations,
)
from gansearch.compress.encodings import (
    CodebookEncoding,
    EncodedTensor,
    FloatEncoding,
    IntEncoding,
    decode_weight,
    encode_weight,
    pack_bits,
    parse_encoding,
    unpack_bits,
)
from gansearch.compress.fakequant import (
    attach_weight_encoding,
    encoded_weight,
    remove_weight_encoding,
    weight_encoding_of,
)
from gansearch.compress.quantizers import codebook_assign, fit_codebook


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


# --------------------------------------------------------------------------- bit packing


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [0, 1, 7, 13, 1001])
def test_pack_unpack_round_trip_with_dense_length(bits: int, count: int) -> None:
    generator = torch.Generator().manual_seed(bits * 1000 + count)
    codes = torch.randint(0, 1 << bits, (count,), generator=generator)
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == math.ceil(count * bits / 8)
    assert torch.equal(unpack_bits(packed, bits, count), codes)


@pytest.mark.parametrize(
    ("codes", "bits", "stream"),
    [
        # Code i fills stream bits i*bits.., least significant first; byte j holds stream
        # bits 8j..8j+7 with bit 8j as its LSB.
        ([1, 2, 3], 2, [0b00111001]),  # 01 10 11, LSB first: 1,0 0,1 1,1
        ([1, 2, 7], 3, [0b11010001, 0b1]),  # 100 010 111
        ([1, 0, 1, 1, 0, 0, 0, 0, 1], 1, [0b00001101, 0b1]),
        ([0xA, 0x3, 0xF], 4, [0x3A, 0x0F]),  # low nibble first
        ([31, 1], 5, [0b00111111, 0b0]),  # 11111 10000
        ([0b1010101, 0b0000001], 7, [0b11010101, 0b0]),
        ([255, 0, 17], 8, [255, 0, 17]),
    ],
)
def test_pack_bits_hand_computed_streams(codes: list[int], bits: int, stream: list[int]) -> None:
    packed = pack_bits(torch.tensor(codes), bits)
    assert packed.dtype == torch.uint8 and packed.tolist() == stream
    assert unpack_bits(torch.tensor(stream, dtype=torch.uint8), bits, len(codes)).tolist() == codes


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_bits_equals_the_little_endian_integer(bits: int) -> None:
    # The stream read as one little-endian integer is sum(code_i << (i * bits)): an
    # independent statement of the layout every stored artifact uses.
    generator = torch.Generator().manual_seed(bits)
    for count in (1, 5, 8, 9, 77, 256):
        codes = torch.randint(0, 1 << bits, (count,), generator=generator)
        as_int = sum(int(code) << (i * bits) for i, code in enumerate(codes.tolist()))
        expected = as_int.to_bytes(math.ceil(count * bits / 8), "little")
        assert bytes(pack_bits(codes, bits).tolist()) == expected
        # Any integer dtype and shape packs the same, flattened.
        assert torch.equal(
            pack_bits(codes.to(torch.int32).reshape(1, -1), bits), pack_bits(codes, bits)
        )


def test_pack_bits_rejects_out_of_range_codes() -> None:
    with pytest.raises(ValueError, match="codes"):
        pack_bits(torch.tensor([0, 16]), 4)
    with pytest.raises(ValueError, match="bits"):
        pack_bits(torch.tensor([0]), 9)


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "spec",
    [
        "float32",
        "float16",
        "binary",
        "ternary",
        *(f"int{b}" for b in range(2, 9)),
        "codebook2",
        "codebook16",
        "codebook256",
    ],
)
def test_parse_encoding_round_trips_spec(spec: str) -> None:
    encoding = parse_encoding(spec)
    assert encoding.spec == spec
    assert parse_encoding(encoding.spec) == encoding


def test_parse_encoding_aliases_and_weight_bits() -> None:
    assert parse_encoding("int1") == IntEncoding(1) == parse_encoding("binary")
    assert parse_encoding("ternary") == IntEncoding(2, ternary=True)
    assert [
        parse_encoding(s).weight_bits for s in ("float32", "float16", "int3", "binary", "ternary")
    ] == [32, 16, 3, 1, 2]
    assert [CodebookEncoding(k).weight_bits for k in (2, 3, 16, 17, 256)] == [1, 2, 4, 5, 8]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("int9", "bits"), ("codebook1", "k"), ("foo", "Accepted"), ("int0", "bits")],
)
def test_parse_encoding_errors_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_encoding(spec)
    assert "codebook2..codebook256" in str(info.value)


def test_encoding_constructors_validate() -> None:
    with pytest.raises(ValueError, match="bits"):
        IntEncoding(0)
    with pytest.raises(ValueError, match="k"):
        CodebookEncoding(257)
    with pytest.raises(ValueError, match="16 or 32"):
        FloatEncoding(8)
    with pytest.raises(ValueError, match="ternary"):
        IntEncoding(3, ternary=True)


# --------------------------------------------------------------------------- quantisation quality


def test_mse_strictly_decreases_with_bits() -> None:
    weight = _randn(16, 8, 3, 3) * 0.1
    errors = [_mse(encode_weight(weight, IntEncoding(b)).decode(), weight) for b in range(1, 9)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-4 * float(weight.var())  # int8 is nearly lossless


def test_mse_fitted_range_beats_min_max_for_heavy_tails() -> None:
    # Student-t with 2 degrees of freedom, built from seeded normals: heavy-tailed.
    normal, chi = _randn(16, 256, seed=1), _randn(2, 16, 256, seed=2)
    weight = 0.05 * normal / chi.square().mean(dim=0).sqrt()
    fitted = _mse(encode_weight(weight, IntEncoding(3)).decode(), weight)
    low, high = weight.amin(1, keepdim=True), weight.amax(1, keepdim=True)
    scale = (high - low) / 7
    naive = torch.round((weight - low) / scale).clamp(0, 7) * scale + low
    assert fitted < 0.8 * _mse(naive, weight)


def test_binary_and_ternary_levels_per_channel() -> None:
    weight = _randn(6, 5, 3, 3)
    binary = encode_weight(weight, parse_encoding("binary")).decode()
    ternary = encode_weight(weight, parse_encoding("ternary")).decode()
    for channel in range(6):
        assert binary[channel].unique().numel() == 2
        assert ternary[channel].unique().numel() == 3
        alpha = weight[channel].abs().mean().half().float()
        assert torch.allclose(binary[channel].abs(), alpha.expand(5, 3, 3))
        assert torch.equal(
            torch.sign(binary[channel]), torch.where(weight[channel] >= 0, 1.0, -1.0)
        )
    # TWN threshold: weights below 0.7 * mean|w| become exactly zero.
    small = weight.abs() <= 0.7 * weight.abs().mean(dim=(1, 2, 3), keepdim=True)
    assert torch.all(ternary[small] == 0) and torch.all(ternary[~small] != 0)


def test_codebook_is_exact_when_k_covers_distinct_values() -> None:
    values = torch.tensor([-0.5, -0.125, 0.0, 0.25, 0.75, 1.5])  # float16-representable
    generator = torch.Generator().manual_seed(3)
    weight = values[torch.randint(0, 6, (4, 3, 3, 3), generator=generator)]
    for k in (6, 8, 256):
        assert torch.equal(encode_weight(weight, CodebookEncoding(k)).decode(), weight)
    assert not torch.equal(encode_weight(weight, CodebookEncoding(4)).decode(), weight)


@pytest.mark.parametrize("k", [2, 5, 16])
def test_codebook_has_at_most_k_values_and_improves_with_k(k: int) -> None:
    weight = _randn(8, 4, 3, 3)
    decoded = encode_weight(weight, CodebookEncoding(k)).decode()
    assert decoded.unique().numel() <= k
    assert _mse(encode_weight(weight, CodebookEncoding(2 * k)).decode(), weight) < _mse(
        decoded, weight
    )


def test_codebook_on_300k_weights() -> None:
    # Its speed is measured by `gansearch bench`; here, what it produces at that size.
    weight = _randn(300, 1000)
    encoded = encode_weight(weight, CodebookEncoding(256))
    assert encoded.nbytes == 300_000 + 256 * 2  # 8-bit indices + float16 centroids
    centroids = encoded.tensors["centroids"].float()
    assert torch.all(centroids[1:] >= centroids[:-1])
    decoded = encoded.decode()
    assert decoded.unique().numel() <= 256
    assert torch.equal(encode_weight(weight, CodebookEncoding(256)).decode(), decoded)
    assert _mse(decoded, weight) < _mse(
        encode_weight(weight, CodebookEncoding(64)).decode(), weight
    )


def _sklearn_centroids(values: np.ndarray, k: int, **options: object) -> torch.Tensor:
    """Sorted ``sklearn.cluster.KMeans`` centroids, float16-rounded as fit_codebook stores."""
    kmeans = KMeans(k, **options).fit(values.reshape(-1, 1))
    return torch.from_numpy(np.sort(kmeans.cluster_centers_.ravel())).half().float()


def _inertia(values: torch.Tensor, centroids: torch.Tensor) -> float:
    nearest = centroids[codebook_assign(values, centroids)]
    return float(((values.double() - nearest.double()) ** 2).sum())


@pytest.mark.parametrize("k", [4, 8, 16])
@pytest.mark.parametrize("shape", ["uniform", "normal"])
def test_codebook_is_lloyd_from_linear_init_like_sklearn(k: int, shape: str) -> None:
    # Same start (Han et al.'s linear initialisation over [min, max]), same algorithm:
    # sklearn's Lloyd iterations reach the same fixed point.
    rng = np.random.default_rng(k)
    values = rng.uniform(-1, 1, 3000) if shape == "uniform" else rng.normal(0, 1, 3000)
    weight = torch.from_numpy(values).float()
    data = weight.double().numpy()
    init = np.linspace(data.min(), data.max(), k).reshape(-1, 1)
    expected = _sklearn_centroids(
        data, k, init=init, n_init=1, algorithm="lloyd", tol=0.0, max_iter=100_000
    )
    assert torch.equal(fit_codebook(weight, k, max_iter=100_000, tol=0.0), expected)


def test_codebook_finds_well_separated_clusters_like_sklearn() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([-3.0, -1.0, 0.5, 2.0, 4.0])
    values = np.concatenate(
        [c + 0.05 * rng.standard_normal(200 + 37 * i) for i, c in enumerate(centres)]
    )
    weight = torch.from_numpy(values).float()
    ours = fit_codebook(weight, 5)
    expected = _sklearn_centroids(weight.double().numpy(), 5, n_init=10, random_state=0)
    torch.testing.assert_close(ours, expected, rtol=0.0, atol=2e-3)  # 1 float16 ulp at 4
    assert codebook_assign(weight, ours).bincount().tolist() == [200 + 37 * i for i in range(5)]


@pytest.mark.parametrize("k", [2, 4, 8])
def test_codebook_inertia_matches_sklearn_best_of_ten(k: int) -> None:
    # With few centroids, Lloyd from the linear start reaches the inertia of sklearn's best
    # of 10 k-means++ starts (within 1%). With many centroids on bell-shaped data it lands
    # in a worse local optimum: linear initialisation keeps centroids in the tails on
    # purpose (large weights matter most, Han et al. 2016), which costs inertia.
    weight = torch.from_numpy(np.random.default_rng(k).normal(0, 1, 2000)).float()
    reference = _sklearn_centroids(weight.double().numpy(), k, n_init=10, random_state=0)
    assert _inertia(weight, fit_codebook(weight, k)) <= 1.01 * _inertia(weight, reference)


# --------------------------------------------------------------------------- exact sizes


def test_nbytes_matches_hand_formula() -> None:
    weight = _randn(8, 4, 3, 3)  # 288 weights, 8 output channels
    assert (
        encode_weight(weight, IntEncoding(4)).nbytes == 144 + 8 * 2 + 8 * 2
    )  # codes, f16 scale, f16 zero
    assert encode_weight(weight, IntEncoding(3)).nbytes == 108 + 8 * 2 + 8 * 2
    assert encode_weight(weight, IntEncoding(1)).nbytes == 36 + 8 * 2
    assert encode_weight(weight, parse_encoding("ternary")).nbytes == 72 + 8 * 2
    assert encode_weight(weight, CodebookEncoding(16)).nbytes == 144 + 16 * 2
    assert encode_weight(weight, CodebookEncoding(5)).nbytes == 108 + 5 * 2
    assert encode_weight(weight, FloatEncoding(16)).nbytes == 288 * 2
    assert encode_weight(weight, FloatEncoding(32)).nbytes == 288 * 4
    odd = _randn(7, 3, 1, 1)  # 21 weights at 3 bits = 63 bits -> 8 bytes
    assert encode_weight(odd, IntEncoding(3)).nbytes == 8 + 7 * 2 + 7 * 2


@pytest.mark.parametrize("spec", ["float16", "int5", "binary", "ternary", "codebook32"])
def test_decode_weight_rebuilds_from_stored_tensors(spec: str) -> None:
    weight = _randn(3, 6, 4, 4)  # ConvTranspose layout: (in, out, kh, kw)
    encoded = encode_weight(weight, parse_encoding(spec), channel_axis=1)
    stored = {name: tensor.clone() for name, tensor in encoded.tensors.items()}
    rebuilt = decode_weight(encoded.spec, list(encoded.shape), encoded.channel_axis, stored)
    assert rebuilt.dtype == torch.float32 and rebuilt.shape == weight.shape
    assert torch.equal(rebuilt, encoded.decode())


def test_channel_axis_one_quantises_per_output_channel() -> None:
    # Output channel j of a (in, out, kh, kw) weight has magnitude 10**j: per-output-channel
    # scales keep every channel accurate, per-input-channel scales would not.
    weight = _randn(4, 3, 2, 2) * torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1, 1)
    good = encode_weight(weight, IntEncoding(6), channel_axis=1)
    bad = encode_weight(weight, IntEncoding(6), channel_axis=0)
    assert good.tensors["scale"].numel() == 3
    assert _mse(good.decode()[:, 0], weight[:, 0]) < 0.1 * _mse(bad.decode()[:, 0], weight[:, 0])


# --------------------------------------------------------------------------- weight fake-quant


def test_attached_conv_keeps_type_and_matches_decoded_weight() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1)
    model = nn.Sequential(conv)
    attach_weight_encoding(conv, IntEncoding(4))
    assert isinstance(conv, nn.Conv2d) and dict(model.named_modules())["0"] is conv
    assert weight_encoding_of(conv) == IntEncoding(4) and conv.weight_bits == 4
    model.eval()
    x = _randn(2, 4, 6, 6)
    stored = encoded_weight(conv)
    assert stored.spec == "int4" and stored.nbytes == 144 + 16 + 16
    expected = F.conv2d(x, stored.decode(), conv.bias, padding=1)
    assert torch.equal(model(x), expected)
    assert not torch.equal(stored.decode(), conv.parametrizations.weight.original)


@pytest.mark.parametrize("spec", ["int3", "binary", "ternary", "float16"])
def test_straight_through_gradient_in_training(spec: str) -> None:
    conv = nn.Conv2d(3, 4, 3)
    attach_weight_encoding(conv, parse_encoding(spec))
    conv.train()
    assert torch.equal(conv.weight, encoded_weight(conv).decode())  # STE value is exact
    conv(_randn(2, 3, 5, 5)).square().sum().backward()
    grad = conv.parametrizations.weight.original.grad
    assert grad is not None and grad.abs().sum() > 0


def test_codebook_fine_tuning_keeps_weights_shared() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3)
    attach_weight_encoding(conv, CodebookEncoding(8))
    centroids = conv.parametrizations.weight[0].centroids
    optimizer = torch.optim.SGD([centroids, conv.bias], lr=0.1)
    conv.train()
    before = centroids.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        conv(_randn(2, 4, 6, 6)).square().mean().backward()
        optimizer.step()
    assert not torch.equal(centroids.detach(), before)
    assert conv.weight.unique().numel() <= 8
    stored = encoded_weight(conv)
    assert stored.tensors["centroids"].numel() == 8
    conv.eval()
    assert torch.equal(conv.weight, stored.decode())


def test_conv_transpose_uses_channel_axis_one() -> None:
    deconv = nn.ConvTranspose2d(3, 5, 4, 2, 1)
    attach_weight_encoding(deconv, IntEncoding(4))
    stored = encoded_weight(deconv)
    assert stored.channel_axis == 1 and stored.tensors["scale"].numel() == 5
    deconv.eval()
    x = _randn(1, 3, 4, 4)
    expected = F.conv_transpose2d(x, stored.decode(), deconv.bias, stride=2, padding=1)
    assert torch.equal(deconv(x), expected)


def test_remove_weight_encoding_bakes_decoded_weight() -> None:
    linear = nn.Linear(6, 4)
    attach_weight_encoding(linear, parse_encoding("ternary"))
    decoded = encoded_weight(linear).decode()
    remove_weight_encoding(linear)
    assert type(linear.weight) is nn.Parameter and torch.equal(linear.weight.detach(), decoded)
    assert weight_encoding_of(linear) is None and linear.weight_bits == 32
    assert encoded_weight(linear).spec == "float32"


def test_attach_twice_is_an_error() -> None:
    conv = nn.Conv2d(2, 2, 1)
    attach_weight_encoding(conv, IntEncoding(8))
    with pytest.raises(ValueError, match="already"):
        attach_weight_encoding(conv, IntEncoding(4))


# --------------------------------------------------------------------------- activations


def test_activation_quant_limits_input_levels_and_keeps_type() -> None:
    conv = nn.Conv2d(2, 3, 1)
    seen: list[torch.Tensor] = []
    quantizer = attach_activation_quant(conv, 3)
    conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    assert isinstance(conv, nn.Conv2d) and conv.activation_bits == 3 and conv.weight_bits == 32
    with pytest.raises(RuntimeError, match="calibrat"):
        conv(_randn(1, 2, 4, 4))
    calibrate_activations(conv, [_randn(4, 2, 8, 8, seed=s) for s in range(3)])
    assert float(quantizer.lo) < 0 < float(quantizer.hi)
    seen.clear()
    conv(_randn(4, 2, 8, 8, seed=9))
    assert seen[0].unique().numel() <= 2**3
    assert seen[0].unique().numel() > 2


def test_activation_quant_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    for layer in (model[0], model[2]):
        attach_activation_quant(layer, 4)
    attach_weight_encoding(model[2], CodebookEncoding(4))
    calibrate_activations(model, [_randn(2, 2, 8, 8, seed=s) for s in range(2)])
    model.eval()
    x = _randn(2, 2, 8, 8, seed=5)
    expected = model(x)

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    for layer in (fresh[0], fresh[2]):
        attach_activation_quant(layer, 4)
    attach_weight_encoding(fresh[2], CodebookEncoding(4))
    fresh.load_state_dict(torch.load(buffer))
    fresh.eval()
    assert "0.input_quant.lo" in fresh.state_dict()
    assert torch.equal(fresh(x), expected)


def test_activation_quantizer_validates_bits_and_off_is_identity() -> None:
    with pytest.raises(ValueError, match="bits"):
        ActivationQuantizer(1)
    x = _randn(3, 3)
    assert torch.equal(ActivationQuantizer(32)(x), x)


def test_activation_quant_straight_through_in_training() -> None:
    quantizer = ActivationQuantizer(2)
    quantizer.calibrate([torch.linspace(-1, 1, 10)])
    x = torch.linspace(-1, 1, 7, requires_grad=True)
    quantizer.train()
    y = quantizer(x)
    assert y.detach().unique().numel() <= 4
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(7))


# --------------------------------------------------------------------------- export


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is deprecated
def test_onnx_export_of_quantised_model() -> None:
    onnx = pytest.importorskip("onnx")
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(4, 2, 4, 2, 1),
        nn.Flatten(),
        nn.Linear(2 * 8 * 8, 3),
    )
    attach_weight_encoding(model[0], IntEncoding(4))
    attach_weight_encoding(model[2], CodebookEncoding(16))
    attach_weight_encoding(model[4], parse_encoding("ternary"))
    for index in (0, 2, 4):
        attach_activation_quant(model[index], 8)
    calibrate_activations(model, [_randn(2, 1, 4, 4, seed=s) for s in range(2)])
    model.eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, (_randn(1, 1, 4, 4),), buffer, dynamo=False, opset_version=17)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    assert any(node.op_type == "Round" for node in proto.graph.node)


def test_encoded_tensor_is_plain_payload() -> None:
    encoded = encode_weight(_randn(4, 4), IntEncoding(2))
    assert isinstance(encoded, EncodedTensor)
    assert set(encoded.tensors) == {"codes", "scale", "zero"}
    assert encoded.tensors["codes"].dtype == torch.uint8
    assert (
        encoded.tensors["scale"].dtype == torch.float16
        and encoded.tensors["zero"].dtype == torch.float16
    )
