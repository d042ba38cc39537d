"""Simulated (fake) quantisation for evaluation and quantisation-aware fine-tuning.

Weights: :func:`attach_weight_encoding` registers a parametrisation on ``module.weight``
(``torch.nn.utils.parametrize``), so the module keeps its class and qualified name and
stays ONNX-exportable. In eval mode the weight *is* the decoded stored weight, exactly
``encoded_weight(module).decode()``. In training mode the forward value is the same but
the gradient is the straight-through estimator (Bengio et al., Estimating or Propagating
Gradients Through Stochastic Neurons, 2013): identity, also for weights outside the
clipping range (see :func:`straight_through`; the forward value is exactly ``q(w)``).

What is re-fitted when:

* ``int2..int8``: ``scale`` and ``zero`` are fitted (MSE grid search + EM, see
  :func:`~gansearch.compress.quantizers.fit_affine`) once at attach time and kept as
  buffers; the codes follow the current weight every forward. Call ``refit(weight)`` on
  the parametrisation to fit them again after the weights have moved.
* ``binary`` / ``ternary``: their closed-form scales (``mean|w|``, TWN threshold) are
  recomputed every forward, as in XNOR-Net and TWN training.
* ``codebook<k>``: the assignment of weights to centroids is fixed at attach time (a
  buffer) and the ``k`` centroids are a learnable ``nn.Parameter``, so fine-tuning keeps
  the weights shared: each centroid's gradient is the sum of its weights' gradients
  (Han et al., Deep Compression, ICLR 2016). The original weight is kept (PyTorch's
  parametrisation owns it as ``parametrizations.weight.original``) but is not used and
  gets no gradient. Centroids pass through float16 rounding (STE in training).
* ``float16``: round to float16 (STE in training); ``float32``: identity.

Activations are quantised by :mod:`gansearch.compress.actquant`.

Cost metrics read ``module.weight_bits`` and ``module.activation_bits`` (32 when absent).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gansearch.compress.encodings import (
    CodebookEncoding,
    EncodedTensor,
    FloatEncoding,
    IntEncoding,
    WeightEncoding,
    encode_weight,
    from_rows,
    normalize_channel_axis,
    pack_bits,
    to_rows,
)
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


def default_channel_axis(module: nn.Module) -> int:
    """Output-channel axis of ``module.weight``: 1 for ConvTranspose (in, out, ...), else 0."""
    return 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0


def straight_through(x: Tensor, quantized: Tensor) -> Tensor:
    """Value of ``quantized``, gradient of the identity in ``x`` (Bengio et al. 2013).

    Written as ``quantized + (x - x)`` with the quantised path detached, so the value
    is *exactly* ``quantized`` (``x + (q - x).detach()`` is off by float round-off).
    """
    return quantized.detach() + (x - x.detach())


# --------------------------------------------------------------------------- weights


class WeightEncodingParametrization(nn.Module):
    """Base of the weight parametrisations; subclasses implement ``quantize``/``encoded``."""

    def __init__(self, encoding: WeightEncoding, channel_axis: int) -> None:
        super().__init__()
        self.encoding = encoding
        self.channel_axis = channel_axis

    @property
    def weight_bits(self) -> int:
        return self.encoding.weight_bits

    def quantize(self, weight: Tensor) -> Tensor:
        """The decoded (dequantised) weight, float32-valued, same shape."""
        raise NotImplementedError

    def encoded(self, weight: Tensor) -> EncodedTensor:
        """The exact stored form of the weight this parametrisation produces from ``weight``."""
        raise NotImplementedError

    def forward(self, weight: Tensor) -> Tensor:
        quantized = self.quantize(weight).to(weight.dtype)
        if self.training:
            return straight_through(weight, quantized)
        return quantized

    def extra_repr(self) -> str:
        return f"encoding={self.encoding.spec}, channel_axis={self.channel_axis}"


class FloatParametrization(WeightEncodingParametrization):
    """float16: round through float16; float32: identity."""

    def quantize(self, weight: Tensor) -> Tensor:
        if self.encoding.weight_bits == 16:
            return weight.to(torch.float16).to(torch.float32)
        return weight

    def encoded(self, weight: Tensor) -> EncodedTensor:
        return encode_weight(weight.detach(), self.encoding, channel_axis=self.channel_axis)


class AffineParametrization(WeightEncodingParametrization):
    """int2..int8 per output channel; ``scale``/``zero`` buffers fixed until ``refit``."""

    def __init__(self, encoding: IntEncoding, channel_axis: int, weight: Tensor) -> None:
        super().__init__(encoding, channel_axis)
        channels = weight.shape[channel_axis]
        self.register_buffer("scale", torch.zeros(channels, device=weight.device))
        self.register_buffer("zero", torch.zeros(channels, device=weight.device))
        self.refit(weight)

    @torch.no_grad()
    def refit(self, weight: Tensor) -> None:
        """Fit ``scale`` and ``zero`` to ``weight`` again (MSE-optimal, float16-valued)."""
        scale, zero = fit_affine(
            to_rows(weight.detach().float(), self.channel_axis), self.encoding.bits
        )
        self.scale.copy_(scale)
        self.zero.copy_(zero)

    def quantize(self, weight: Tensor) -> Tensor:
        rows = to_rows(weight.float(), self.channel_axis)
        codes = affine_codes(rows, self.scale, self.zero, self.encoding.bits)
        return from_rows(
            affine_decode(codes, self.scale, self.zero), tuple(weight.shape), self.channel_axis
        )

    def encoded(self, weight: Tensor) -> EncodedTensor:
        with torch.no_grad():
            rows = to_rows(weight.detach().float(), self.channel_axis)
            codes = affine_codes(rows, self.scale, self.zero, self.encoding.bits).to(torch.int64)
            payload = {
                "codes": pack_bits(codes, self.encoding.bits),
                "scale": self.scale.to(torch.float16),
                "zero": self.zero.to(torch.float16),
            }
        return EncodedTensor(self.encoding.spec, tuple(weight.shape), self.channel_axis, payload)


class SignParametrization(WeightEncodingParametrization):
    """binary (XNOR-Net) or ternary (TWN) per output channel; scales recomputed each forward."""

    def _codes_and_scale(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        if self.encoding.ternary:
            return ternary_fit(rows)
        return binary_codes(rows), binary_scale(rows)

    def quantize(self, weight: Tensor) -> Tensor:
        rows = to_rows(weight.float(), self.channel_axis)
        codes, scale = self._codes_and_scale(rows)
        decoded = (
            ternary_decode(codes, scale) if self.encoding.ternary else binary_decode(codes, scale)
        )
        return from_rows(decoded, tuple(weight.shape), self.channel_axis)

    def encoded(self, weight: Tensor) -> EncodedTensor:
        return encode_weight(weight.detach(), self.encoding, channel_axis=self.channel_axis)


class CodebookParametrization(WeightEncodingParametrization):
    """Shared learnable centroids with a fixed assignment (Han et al., Deep Compression 2016)."""

    def __init__(self, encoding: CodebookEncoding, channel_axis: int, weight: Tensor) -> None:
        super().__init__(encoding, channel_axis)
        rows = to_rows(weight.detach().float(), channel_axis)
        centroids = fit_codebook(rows, encoding.k)
        self.centroids = nn.Parameter(centroids)
        # uint8 suffices for k <= 256; channel-major order, like the stored codes.
        self.register_buffer(
            "indices", codebook_assign(rows.reshape(-1), centroids).to(torch.uint8)
        )
        self.shape = tuple(weight.shape)

    def stored_centroids(self) -> Tensor:
        """Centroids as stored (float16-rounded); STE through the rounding in training."""
        rounded = self.centroids.to(torch.float16).to(torch.float32)
        if self.training:
            return straight_through(self.centroids, rounded)
        return rounded

    def quantize(self, weight: Tensor) -> Tensor:
        flat = self.stored_centroids()[self.indices.long()]
        channels = self.shape[self.channel_axis]
        return from_rows(flat.reshape(channels, -1), self.shape, self.channel_axis)

    def forward(self, weight: Tensor) -> Tensor:
        # The weight is fully determined by (centroids, indices); the original is unused.
        return self.quantize(weight).to(weight.dtype)

    def encoded(self, weight: Tensor) -> EncodedTensor:
        payload = {
            "codes": pack_bits(self.indices.long(), self.encoding.index_bits),
            "centroids": self.centroids.detach().to(torch.float16).clone(),
        }
        return EncodedTensor(self.encoding.spec, self.shape, self.channel_axis, payload)


def _make_parametrization(
    encoding: WeightEncoding, channel_axis: int, weight: Tensor
) -> WeightEncodingParametrization:
    if isinstance(encoding, FloatEncoding):
        return FloatParametrization(encoding, channel_axis)
    if isinstance(encoding, CodebookEncoding):
        return CodebookParametrization(encoding, channel_axis, weight)
    if isinstance(encoding, IntEncoding):
        if encoding.ternary or encoding.bits == 1:
            return SignParametrization(encoding, channel_axis)
        return AffineParametrization(encoding, channel_axis, weight)
    raise ValueError(
        f"No fake-quant handler for weight encoding {encoding!r}; "
        "known: FloatEncoding, IntEncoding, CodebookEncoding."
    )


def _encoding_parametrization(
    module: nn.Module,
) -> tuple[int, WeightEncodingParametrization] | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for position, item in enumerate(module.parametrizations.weight):
        if isinstance(item, WeightEncodingParametrization):
            return position, item
    return None


def attach_weight_encoding(
    module: nn.Module, encoding: WeightEncoding, *, seed: int = 0, channel_axis: int | None = None
) -> None:
    """Make ``module.weight`` follow ``encoding`` (fake quantisation); set ``weight_bits``.

    Args:
        module: a module with a ``weight`` parameter (Conv, ConvTranspose, Linear, ...).
        encoding: the weight encoding.
        seed: accepted for interface stability; every fit is deterministic.
        channel_axis: output-channel axis of the weight; default 1 for ConvTranspose, else 0.

    Raises:
        ValueError: if the module has no weight parameter or already has an encoding.
    """
    del seed  # all fits are deterministic
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"{type(module).__name__} has no `weight` tensor to encode.")
    if _encoding_parametrization(module) is not None:
        raise ValueError(
            f"{type(module).__name__} already has weight encoding "
            f"{weight_encoding_of(module).spec!r}; call remove_weight_encoding first."
        )
    axis = normalize_channel_axis(
        default_channel_axis(module) if channel_axis is None else channel_axis, weight.dim()
    )
    parametrization = _make_parametrization(encoding, axis, weight.detach())
    parametrization.train(module.training)
    parametrize.register_parametrization(module, "weight", parametrization)
    module.weight_bits = encoding.weight_bits


def weight_encoding_of(module: nn.Module) -> WeightEncoding | None:
    """The encoding attached to ``module.weight``, or None."""
    found = _encoding_parametrization(module)
    return None if found is None else found[1].encoding


def encoded_weight(module: nn.Module) -> EncodedTensor:
    """Exact stored form of ``module.weight`` (float32 if no encoding is attached)."""
    found = _encoding_parametrization(module)
    if found is None:
        return encode_weight(
            module.weight.detach(), FloatEncoding(32), channel_axis=default_channel_axis(module)
        )
    position, parametrization = found
    with torch.no_grad():
        value = module.parametrizations.weight.original
        for item in list(module.parametrizations.weight)[:position]:
            value = item(value)
        return parametrization.encoded(value)


def remove_weight_encoding(module: nn.Module) -> None:
    """Bake the dequantised weight into a plain parameter; ``module.weight_bits`` becomes 32."""
    if _encoding_parametrization(module) is None:
        raise ValueError(f"{type(module).__name__} has no weight encoding to remove.")
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    module.weight_bits = 32


# --------------------------------------------------------------------------- activations
