"""Per-layer weight encodings: specs, exact stored sizes, real bit packing, encode/decode.

An encoding says how one layer's weight tensor is stored (the codes and their scales are
fitted by :mod:`gansearch.compress.quantizers`, where each method is described):

* ``float32`` / ``float16``: the values themselves in that dtype.
* ``int2`` .. ``int8``: affine (uniform) quantisation per output channel, survey Eq. 9-10,
  fitted to minimise the MSE (QGAN, Wang 2019). Stored: packed codes + float16 ``scale``
  + float16 ``zero`` (2 + 2 bytes per channel).
* ``binary`` (``int1``): ``sign(w) * mean|w|`` per output channel (XNOR-Net, Rastegari et
  al. 2016). Stored: 1 bit per weight + one float16 ``scale`` per channel.
* ``ternary``: ``{-a, 0, +a}`` per output channel (Li & Liu, Ternary Weight Networks
  2016). Stored: 2-bit codes (0 -> -a, 1 -> 0, 2 -> +a) + one float16 ``scale`` per channel.
* ``codebook<k>``: k-means weight sharing over the whole layer (Han et al., Deep
  Compression, ICLR 2016). Stored: ``ceil(log2 k)``-bit indices + ``k`` float16 centroids.

Codes of every quantised encoding are laid out in *channel-major* order: the weight with
``channel_axis`` moved to the front, flattened (for ``channel_axis == 0`` this is the
natural order). They are packed little-endian into a dense bit stream by
:func:`pack_bits` (NumPy's ``packbits`` with ``bitorder="little"``), so an int4 weight
takes exactly half a byte.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gansearch.compress.quantizers import (
    affine_codes,
    affine_decode,
    binary_codes,
    binary_decode,
    binary_scale,
    codebook_assign,
    fit_affine,
    fit_codebook,
    ternary_decode,
    ternary_fit,
)

_FLOAT16_MAX = float(torch.finfo(torch.float16).max)


# --------------------------------------------------------------------------- encodings


@dataclass(frozen=True)
class FloatEncoding:
    """Weights kept as floating point numbers of ``bits`` bits (16 or 32)."""

    bits: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or self.bits not in (16, 32):
            raise ValueError(f"`bits` must be 16 or 32 for a float encoding, but got {self.bits=}.")

    @property
    def spec(self) -> str:
        return f"float{self.bits}"

    @property
    def weight_bits(self) -> int:
        return self.bits


@dataclass(frozen=True)
class IntEncoding:
    """Per-output-channel integer codes of ``bits`` bits (1 = binary, ternary uses 2)."""

    bits: int
    ternary: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ValueError(
                f"`1 <= bits <= 8` must hold for an int encoding, but got {self.bits=}."
            )
        if self.ternary and self.bits != 2:
            raise ValueError(f"A ternary encoding stores 2 bits per weight, but got {self.bits=}.")

    @property
    def spec(self) -> str:
        if self.ternary:
            return "ternary"
        if self.bits == 1:
            return "binary"
        return f"int{self.bits}"

    @property
    def weight_bits(self) -> int:
        return self.bits


@dataclass(frozen=True)
class CodebookEncoding:
    """One shared codebook of ``k`` centroids per layer (k-means weight sharing)."""

    k: int

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 2 <= self.k <= 256:
            raise ValueError(
                f"`2 <= k <= 256` must hold for a codebook encoding, but got {self.k=}."
            )

    @property
    def spec(self) -> str:
        return f"codebook{self.k}"

    @property
    def index_bits(self) -> int:
        """Bits per stored index, ``ceil(log2 k)``."""
        return (self.k - 1).bit_length()

    @property
    def weight_bits(self) -> int:
        return self.index_bits


WeightEncoding = FloatEncoding | IntEncoding | CodebookEncoding

ACCEPTED_SPECS = "float32, float16, int1..int8, binary (= int1), ternary, codebook2..codebook256"


def parse_encoding(spec: str) -> WeightEncoding:
    """Parse an encoding spec string such as ``"int4"`` or ``"codebook16"``.

    Raises:
        ValueError: for an unknown spec or an out-of-range bit width / codebook size.
    """
    if not isinstance(spec, str):
        raise ValueError(f"An encoding spec must be a string, but got {spec!r}.")
    text = spec.strip().lower()
    if text in ("float32", "float16"):
        return FloatEncoding(int(text[5:]))
    if text == "binary":
        return IntEncoding(1)
    if text == "ternary":
        return IntEncoding(2, ternary=True)
    match = re.fullmatch(r"(int|codebook)(\d+)", text)
    if match is not None:
        kind, number = match.group(1), int(match.group(2))
        try:
            return IntEncoding(number) if kind == "int" else CodebookEncoding(number)
        except ValueError as error:
            raise ValueError(
                f"Invalid encoding spec {spec!r}: {error} Accepted: {ACCEPTED_SPECS}."
            ) from None
    raise ValueError(f"Unknown encoding spec {spec!r}. Accepted: {ACCEPTED_SPECS}.")


# --------------------------------------------------------------------------- bit packing


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Pack integer codes into a dense little-endian bit stream.

    Code ``i`` occupies bits ``i*bits .. (i+1)*bits - 1`` of the stream, least significant
    bit first; byte ``j`` holds stream bits ``8j .. 8j+7`` (bit ``8j`` as its LSB). This is
    NumPy's ``bitorder="little"``: each code is unpacked to its bits, the low ``bits`` of
    them are kept, and the stream is packed with :func:`numpy.packbits`.

    Args:
        codes: integer tensor (any shape, flattened) with values in ``[0, 2**bits)``.
        bits: bits per code, 1..8.

    Returns:
        uint8 tensor of exactly ``ceil(codes.numel() * bits / 8)`` bytes, on the device of
        ``codes``.
    """
    _check_bits(bits)
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"`codes` must be an integer tensor, but got {codes.dtype=}.")
    flat = codes.detach().reshape(-1)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(
            f"`0 <= codes < 2**bits` must hold, but got values in "
            f"[{int(flat.min())}, {int(flat.max())}] with {bits=}."
        )
    values = flat.to(torch.uint8).cpu().numpy()
    code_bits = np.unpackbits(values[:, None], axis=1, bitorder="little")[:, :bits]
    stream = np.packbits(code_bits.reshape(-1), bitorder="little")
    return torch.from_numpy(stream).to(codes.device)


def unpack_bits(packed: Tensor, bits: int, count: int) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``count`` codes as an int64 tensor."""
    _check_bits(bits)
    if packed.dtype != torch.uint8:
        raise ValueError(f"`packed` must be a uint8 tensor, but got {packed.dtype=}.")
    needed = math.ceil(count * bits / 8)
    if count < 0 or packed.numel() < needed:
        raise ValueError(
            f"`packed` must hold at least ceil(count * bits / 8) bytes, but got "
            f"{packed.numel()} bytes for {count=} and {bits=}."
        )
    stream = packed.detach().reshape(-1)[:needed].cpu().numpy()
    code_bits = np.unpackbits(stream, count=count * bits, bitorder="little").reshape(count, bits)
    values = np.packbits(code_bits, axis=1, bitorder="little").reshape(count)
    return torch.from_numpy(values).to(device=packed.device, dtype=torch.int64)


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"`1 <= bits <= 8` must hold, but got {bits=}.")


# --------------------------------------------------------------------------- layout helpers


def normalize_channel_axis(channel_axis: int, ndim: int) -> int:
    """``channel_axis`` as a non-negative axis of a tensor with ``ndim`` dimensions."""
    if ndim < 1:
        raise ValueError(f"A weight must have at least one dimension, but got {ndim=}.")
    if not -ndim <= channel_axis < ndim:
        raise ValueError(
            f"`-ndim <= channel_axis < ndim` must hold, but got ({channel_axis=}, {ndim=})."
        )
    return channel_axis % ndim


def to_rows(weight: Tensor, channel_axis: int) -> Tensor:
    """View ``weight`` as ``(channels, weights_per_channel)`` in channel-major order."""
    axis = normalize_channel_axis(channel_axis, weight.dim())
    return weight.movedim(axis, 0).reshape(weight.shape[axis], -1)


def from_rows(rows: Tensor, shape: tuple[int, ...], channel_axis: int) -> Tensor:
    """Inverse of :func:`to_rows`."""
    axis = normalize_channel_axis(channel_axis, len(shape))
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    return rows.reshape(moved).movedim(0, axis)


# --------------------------------------------------------------------------- encoded tensors


@dataclass(frozen=True, eq=False)
class EncodedTensor:
    """A weight in its stored form: the payload tensors plus the metadata to decode them.

    Attributes:
        spec: encoding spec string (see :func:`parse_encoding`).
        shape: shape of the original weight.
        channel_axis: output-channel axis (non-negative) of the original weight.
        tensors: the payload exactly as stored; treat as read-only. Keys per encoding:
            float: ``values``; int2..8: ``codes`` (uint8, packed), ``scale``, ``zero``
            (float16 per channel; ``w = scale * code + zero``); binary / ternary:
            ``codes``, ``scale``; codebook: ``codes``, ``centroids`` (float16, ``k``).
    """

    spec: str
    shape: tuple[int, ...]
    channel_axis: int
    tensors: dict[str, Tensor]

    @property
    def encoding(self) -> WeightEncoding:
        return parse_encoding(self.spec)

    @property
    def nbytes(self) -> int:
        """Exact stored size of the payload in bytes."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def decode(self) -> Tensor:
        """The dequantised weight, float32, original shape."""
        return decode_weight(self.spec, self.shape, self.channel_axis, self.tensors)


def encode_weight(
    weight: Tensor, encoding: WeightEncoding, *, channel_axis: int = 0, seed: int = 0
) -> EncodedTensor:
    """Encode ``weight`` with ``encoding``.

    Args:
        weight: floating point weight, at least 1-D.
        encoding: the encoding to use.
        channel_axis: output-channel axis: 0 for Conv/Linear, 1 for ConvTranspose.
        seed: accepted for interface stability; every fit here is deterministic
            (grid search, sorted Lloyd iterations), so it has no effect.
    """
    del seed  # all fits are deterministic
    if not weight.dtype.is_floating_point:
        raise ValueError(f"`weight` must be a floating point tensor, but got {weight.dtype=}.")
    axis = normalize_channel_axis(channel_axis, weight.dim())
    weight = weight.detach()
    shape = tuple(weight.shape)

    if isinstance(encoding, FloatEncoding):
        dtype = torch.float32 if encoding.bits == 32 else torch.float16
        return EncodedTensor(encoding.spec, shape, axis, {"values": weight.to(dtype).clone()})
    if not isinstance(encoding, (IntEncoding, CodebookEncoding)):
        raise ValueError(
            f"Unknown weight encoding {encoding!r}; "
            "expected FloatEncoding, IntEncoding or CodebookEncoding."
        )

    rows = to_rows(weight.to(torch.float32), axis)
    if rows.numel() and not bool(torch.isfinite(rows).all()):
        raise ValueError("`weight` must be finite to be quantised.")
    if rows.numel() and float(rows.abs().max()) > _FLOAT16_MAX:
        raise ValueError(
            f"`weight` magnitudes must be <= {_FLOAT16_MAX} (float16 range) to be quantised."
        )

    if isinstance(encoding, CodebookEncoding):
        centroids = fit_codebook(rows, encoding.k)
        codes = codebook_assign(rows.reshape(-1), centroids)
        payload = {
            "codes": pack_bits(codes, encoding.index_bits),
            "centroids": centroids.to(torch.float16),
        }
    elif encoding.ternary:
        codes, scale = ternary_fit(rows)
        payload = {"codes": pack_bits(codes.to(torch.int64), 2), "scale": scale.to(torch.float16)}
    elif encoding.bits == 1:
        scale = binary_scale(rows)
        payload = {
            "codes": pack_bits(binary_codes(rows).to(torch.int64), 1),
            "scale": scale.to(torch.float16),
        }
    else:
        scale, zero = fit_affine(rows, encoding.bits)
        codes = affine_codes(rows, scale, zero, encoding.bits)
        payload = {
            "codes": pack_bits(codes.to(torch.int64), encoding.bits),
            "scale": scale.to(torch.float16),
            "zero": zero.to(torch.float16),
        }
    return EncodedTensor(encoding.spec, shape, axis, payload)


def decode_weight(
    spec: str, shape: tuple[int, ...], channel_axis: int, tensors: dict[str, Tensor]
) -> Tensor:
    """Rebuild a float32 weight of ``shape`` from stored ``tensors`` and manifest metadata."""
    encoding = parse_encoding(spec)
    shape = tuple(int(s) for s in shape)
    if isinstance(encoding, FloatEncoding):
        return _payload(tensors, "values", spec).to(torch.float32).reshape(shape)
    axis = normalize_channel_axis(channel_axis, len(shape))
    count = math.prod(shape)
    channels = shape[axis]
    codes = unpack_bits(_payload(tensors, "codes", spec), encoding.weight_bits, count)
    if isinstance(encoding, CodebookEncoding):
        centroids = _payload(tensors, "centroids", spec).to(torch.float32)
        flat = centroids[codes]
        return from_rows(flat.reshape(channels, -1), shape, axis)
    rows = codes.to(torch.float32).reshape(channels, -1)
    scale = _payload(tensors, "scale", spec).to(torch.float32)
    if encoding.ternary:
        decoded = ternary_decode(rows, scale)
    elif encoding.bits == 1:
        decoded = binary_decode(rows, scale)
    else:
        decoded = affine_decode(rows, scale, _payload(tensors, "zero", spec).to(torch.float32))
    return from_rows(decoded, shape, axis)


def _payload(tensors: dict[str, Tensor], key: str, spec: str) -> Tensor:
    if key not in tensors:
        raise ValueError(
            f"A {spec!r} payload needs tensor {key!r}, but got keys {sorted(tensors)}."
        )
    return tensors[key]
