"""Per-layer weight encodings with exact stored sizes and real bit packing.

An encoding says how one layer's weight tensor is stored:

* ``float32`` / ``float16``: the values themselves in that dtype.
* ``int2`` .. ``int8``: affine (uniform) quantisation per output channel, survey Eq. 9-10:
  ``w_q = scale * code + zero`` with unsigned codes ``0 .. 2**b - 1``. ``zero`` is a
  float16 *offset* (the value that code 0 decodes to), not an integer zero-point, exactly
  as in Eq. 10 of the survey; ``scale`` is float16 too. Both are fitted to minimise the
  mean squared error (the objective of QGAN, Wang 2019): a vectorised grid search over
  clipping ranges shrinking ``[min, max]`` towards its centre, refined by a few
  alternating (EM-like) steps that refit ``scale, zero`` by least squares given the codes
  and then re-round the codes. Stored: packed codes + ``scale`` + ``zero`` (2 + 2 bytes
  per channel).
* ``binary`` (``int1``): ``sign(w) * mean|w|`` per output channel (XNOR-Net, Rastegari
  et al. 2016, as used by ApGAN). Stored: 1 bit per weight + one float16 ``scale`` per
  channel. Zero weights count as positive.
* ``ternary``: ``{-a, 0, +a}`` per output channel with threshold ``0.7 * mean|w|`` and
  ``a`` the mean magnitude of the weights above it (Li & Liu, Ternary Weight Networks
  2016). Stored: 2-bit codes (0 -> -a, 1 -> 0, 2 -> +a) + one float16 ``scale`` per channel.
* ``codebook<k>``: k-means weight sharing over the whole layer (Han et al., Deep
  Compression, ICLR 2016), linear initialisation over ``[min, max]``, exact 1-D Lloyd
  iterations on the sorted weights. Stored: ``ceil(log2 k)``-bit indices + ``k`` float16
  centroids. If the layer has at most ``k`` distinct values, the centroids are those
  values, so decoding is exact up to the float16 rounding of the centroids.

Codes of every quantised encoding are laid out in *channel-major* order: the weight with
``channel_axis`` moved to the front, flattened (for ``channel_axis == 0`` this is the
natural order). They are packed little-endian into a dense bit stream by
:func:`pack_bits`, so an int4 weight takes exactly half a byte.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

_FLOAT16_MAX = float(torch.finfo(torch.float16).max)
_TINY = 1e-30


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
    bit first; byte ``j`` holds stream bits ``8j .. 8j+7`` (bit ``8j`` as its LSB).

    Args:
        codes: integer tensor (any shape, flattened) with values in ``[0, 2**bits)``.
        bits: bits per code, 1..8.

    Returns:
        uint8 tensor of exactly ``ceil(codes.numel() * bits / 8)`` bytes.
    """
    _check_bits(bits)
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"`codes` must be an integer tensor, but got {codes.dtype=}.")
    flat = codes.reshape(-1)
    count = flat.numel()
    if count and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(
            f"`0 <= codes < 2**bits` must hold, but got values in "
            f"[{int(flat.min())}, {int(flat.max())}] with {bits=}."
        )
    device = flat.device
    shifts = torch.arange(bits, dtype=torch.uint8, device=device)
    stream = ((flat.to(torch.uint8).unsqueeze(1) >> shifts) & 1).reshape(-1)
    nbytes = math.ceil(count * bits / 8)
    padded = torch.zeros(nbytes * 8, dtype=torch.uint8, device=device)
    padded[: stream.numel()] = stream
    place = torch.tensor([1 << j for j in range(8)], dtype=torch.int32, device=device)
    return (padded.view(nbytes, 8).to(torch.int32) * place).sum(dim=1).to(torch.uint8)


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
    device = packed.device
    byte_shifts = torch.arange(8, dtype=torch.uint8, device=device)
    stream = ((packed.reshape(-1)[:needed].unsqueeze(1) >> byte_shifts) & 1).reshape(-1)
    per_code = stream[: count * bits].view(count, bits).to(torch.int64)
    code_shifts = torch.arange(bits, dtype=torch.int64, device=device)
    return (per_code << code_shifts).sum(dim=1)


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


def _float16_round(x: Tensor) -> Tensor:
    return x.to(torch.float16).to(torch.float32)


# --------------------------------------------------------------------------- affine (int2..int8)


def _per_row(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-row tensor ``(rows,)`` / ``(rows, c)`` to broadcast against ``like``."""
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))


def affine_codes(rows: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """Eq. 9: ``clamp(round((w - zero) / scale), 0, 2**bits - 1)`` per row, as float codes.

    ``scale`` and ``zero`` have one entry per row. A zero scale (a constant channel, or
    one whose range underflows float16) decodes every code to ``zero``.
    """
    levels = float((1 << bits) - 1)
    safe_scale = torch.clamp(_per_row(scale, rows), min=_TINY)
    return torch.clamp(torch.round((rows - _per_row(zero, rows)) / safe_scale), 0.0, levels)


def affine_decode(codes: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """Eq. 10: ``scale * code + zero`` per row."""
    return codes * _per_row(scale, codes) + _per_row(zero, codes)


def _affine_sse(rows: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """Per-row (and per-candidate) sum of squared errors of the affine grid."""
    decoded = affine_decode(affine_codes(rows, scale, zero, bits), scale, zero)
    return ((decoded - rows) ** 2).sum(dim=-1)


def _best_clipping(
    rows: Tensor, bits: int, ratios: Tensor, centre: Tensor, half: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Score ranges ``centre +- ratio * half`` (``ratios``: (rows, R)); best per row.

    Returns ``(sse, scale, zero, ratio)`` of the best candidate of every row.
    """
    levels = float((1 << bits) - 1)
    lo = centre[:, None] - ratios * half[:, None]
    scale = _float16_round(2 * ratios * half[:, None] / levels)
    zero = _float16_round(lo)
    err = torch.empty_like(scale)
    chunk = max(1, 2_000_000 // max(1, rows.numel()))
    for start in range(0, ratios.shape[1], chunk):
        part = slice(start, start + chunk)
        err[:, part] = _affine_sse(rows[:, None, :], scale[:, part], zero[:, part], bits)
    best = err.argmin(dim=1, keepdim=True)
    return tuple(t.gather(1, best)[:, 0] for t in (err, scale, zero, ratios))  # type: ignore[return-value]


def fit_affine(
    rows: Tensor, bits: int, *, num_candidates: int = 25, em_steps: int = 8
) -> tuple[Tensor, Tensor]:
    """Fit per-row ``(scale, zero)`` of an affine ``bits``-bit grid minimising the MSE.

    The objective is QGAN's (Wang, QGAN: Quantized Generative Adversarial Networks, 2019),
    which fits it by EM. Here, vectorised over rows: (1) a coarse grid of
    ``num_candidates`` clipping ranges ``centre +- r * half_range``, ``r`` from 1 (plain
    min/max, always a candidate) down to 0.04; (2) a fine grid of ``num_candidates``
    ratios around each row's best; (3) ``em_steps`` alternating steps that refit
    ``scale, zero`` by least squares given the codes, then re-round the codes. Every
    candidate is scored with float16-rounded parameters (what is stored) and the best one
    per row is kept, so the result is never worse than plain min/max.

    Returns:
        ``(scale, zero)``, float32 tensors of shape ``(rows,)`` holding float16 values.
    """
    rows = rows.to(torch.float32)
    low, high = rows.amin(dim=1), rows.amax(dim=1)
    centre, half = (low + high) / 2, (high - low) / 2
    coarse = torch.linspace(1.0, 1.0 / num_candidates, num_candidates, device=rows.device)
    _, _, _, best_ratio = _best_clipping(rows, bits, coarse.expand(rows.shape[0], -1), centre, half)
    step = (1.0 - 1.0 / num_candidates) / max(1, num_candidates - 1)
    offsets = torch.linspace(-step, step, num_candidates, device=rows.device)
    fine = torch.clamp(best_ratio[:, None] + offsets[None, :], 0.01, 1.0)
    fine[:, 0] = 1.0  # keep plain min/max in the running
    best_err, best_scale, best_zero, _ = _best_clipping(rows, bits, fine, centre, half)

    mean_w = rows.mean(dim=1)
    for _ in range(em_steps):
        codes = affine_codes(rows, best_scale, best_zero, bits)
        mean_q = codes.mean(dim=1)
        centred_q = codes - mean_q[:, None]
        var_q = (centred_q**2).mean(dim=1)
        cov = (centred_q * (rows - mean_w[:, None])).mean(dim=1)
        ok = (var_q > 0) & (cov > 0)
        scale = _float16_round(torch.where(ok, cov / torch.clamp(var_q, min=_TINY), best_scale))
        zero = _float16_round(torch.where(ok, mean_w - scale * mean_q, best_zero))
        err = _affine_sse(rows, scale, zero, bits)
        better = err < best_err
        if not bool(better.any()):
            break
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero


# --------------------------------------------------------------------------- binary / ternary


def binary_scale(rows: Tensor) -> Tensor:
    """XNOR-Net scale ``alpha = mean|w|`` per row, float16-rounded (Rastegari et al. 2016)."""
    return _float16_round(rows.abs().mean(dim=1))


def binary_codes(rows: Tensor) -> Tensor:
    """1 where ``w >= 0`` else 0 (float codes)."""
    return (rows >= 0).to(rows.dtype)


def binary_decode(codes: Tensor, scale: Tensor) -> Tensor:
    return (2 * codes - 1) * scale.reshape(-1, 1)


def ternary_fit(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Ternary Weight Networks (Li & Liu 2016): codes in {0, 1, 2} and scale per row.

    Threshold ``delta = 0.7 * mean|w|``; ``a`` = mean ``|w|`` over ``|w| > delta`` (0 if
    none); code 0 -> ``-a``, 1 -> 0, 2 -> ``+a``.
    """
    magnitude = rows.abs()
    delta = 0.7 * magnitude.mean(dim=1, keepdim=True)
    kept = (magnitude > delta).to(rows.dtype)
    count = kept.sum(dim=1)
    scale = (magnitude * kept).sum(dim=1) / torch.clamp(count, min=1)
    codes = 1 + torch.sign(rows) * kept
    return codes, _float16_round(scale)


def ternary_decode(codes: Tensor, scale: Tensor) -> Tensor:
    return (codes - 1) * scale.reshape(-1, 1)


# --------------------------------------------------------------------------- codebook


def fit_codebook(values: Tensor, k: int, *, max_iter: int = 200, tol: float = 1e-7) -> Tensor:
    """Sorted float16-valued centroids of 1-D k-means (Han et al., Deep Compression 2016).

    Linear initialisation over ``[min, max]`` (Han et al.'s recommendation), then Lloyd
    iterations done exactly on the sorted values with prefix sums (each iteration costs
    ``O(k log n)``, in NumPy float64), until the assignment repeats, no centroid moves
    more than ``tol * (max - min)``, or ``max_iter`` iterations. Deterministic; an empty
    cluster keeps its centroid. With at most ``k`` distinct values the centroids are
    those values (padded by repeating the largest), so reconstruction is exact up to the
    float16 rounding of the centroids.

    Returns:
        float32 tensor of ``k`` non-decreasing, float16-representable centroids.
    """
    ordered = np.sort(values.detach().reshape(-1).to(torch.float64).cpu().numpy())
    if ordered.size == 0:
        return torch.zeros(k, dtype=torch.float32, device=values.device)
    distinct = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
    if distinct.size <= k:
        centroids = np.concatenate([distinct, np.repeat(distinct[-1], k - distinct.size)])
    else:
        prefix = np.concatenate([[0.0], np.cumsum(ordered)])
        centroids = np.linspace(ordered[0], ordered[-1], k)
        tolerance = tol * (ordered[-1] - ordered[0])
        previous = None
        for _ in range(max_iter):
            bounds = np.searchsorted(ordered, (centroids[1:] + centroids[:-1]) / 2)
            if previous is not None and np.array_equal(bounds, previous):
                break
            starts = np.concatenate([[0], bounds])
            ends = np.concatenate([bounds, [ordered.size]])
            counts = ends - starts
            means = (prefix[ends] - prefix[starts]) / np.maximum(counts, 1)
            updated = np.where(counts > 0, means, centroids)
            shift = np.abs(updated - centroids).max()
            centroids, previous = updated, bounds
            if shift <= tolerance:
                break
    result = torch.from_numpy(centroids.astype(np.float32)).to(values.device)
    return _float16_round(result)


def codebook_assign(values: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest centroid (``centroids`` sorted) for every value, int64."""
    centroids = centroids.to(torch.float32)
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    return torch.searchsorted(midpoints.contiguous(), values.to(torch.float32).contiguous())


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
