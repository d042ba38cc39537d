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
  :func:`~gansearch.compress.encodings.fit_affine`) once at attach time and kept as
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

Activations: :class:`ActivationQuantizer` is uniform affine fake-quantisation
(survey Eq. 9-10) with a per-tensor range ``[lo, hi]`` found by a running min/max
observer over calibration batches. :func:`attach_activation_quant` puts one in front of a
module (submodule ``input_quant`` plus a forward pre-hook on the first input).

Cost metrics read ``module.weight_bits`` and ``module.activation_bits`` (32 when absent).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gansearch.compress.encodings import (
    CodebookEncoding,
    EncodedTensor,
    FloatEncoding,
    IntEncoding,
    WeightEncoding,
    affine_codes,
    affine_decode,
    binary_codes,
    binary_decode,
    binary_scale,
    codebook_assign,
    encode_weight,
    fit_affine,
    fit_codebook,
    from_rows,
    normalize_channel_axis,
    pack_bits,
    ternary_decode,
    ternary_fit,
    to_rows,
)

ACTIVATION_QUANT_NAME = "input_quant"


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


class ActivationQuantizer(nn.Module):
    """Uniform affine fake-quantisation of a tensor (survey Eq. 9-10), per-tensor range.

    ``y = clamp(round((x - lo) / s), 0, 2**bits - 1) * s + lo`` with
    ``s = (hi - lo) / (2**bits - 1)``; straight-through gradient in training. ``lo`` and
    ``hi`` are buffers set by a running min/max observer over calibration data (the
    global min and max over all calibration batches). ``bits == 32`` disables it.
    """

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        if (
            isinstance(bits, bool)
            or not isinstance(bits, int)
            or not (2 <= bits <= 8 or bits == 32)
        ):
            raise ValueError(
                f"`2 <= bits <= 8` or `bits == 32` must hold for activations, but got {bits=}."
            )
        self.bits = bits
        self.observing = False
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))

    @property
    def calibrated(self) -> bool:
        return bool(self.lo <= self.hi)

    def reset(self) -> None:
        """Forget the range and start observing."""
        self.lo.fill_(float("inf"))
        self.hi.fill_(float("-inf"))
        self.observing = True

    def freeze(self) -> None:
        """Stop observing; the range is fixed from now on."""
        self.observing = False

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        if x.numel():
            self.lo.copy_(torch.minimum(self.lo, x.detach().min().to(self.lo.dtype)))
            self.hi.copy_(torch.maximum(self.hi, x.detach().max().to(self.hi.dtype)))

    def calibrate(self, batches: Iterable[Tensor]) -> None:
        """Set the range to the min/max over ``batches`` (tensors seen by this quantiser)."""
        self.reset()
        for batch in batches:
            self.observe(batch)
        self.freeze()
        if not self.calibrated:
            raise ValueError(
                "`batches` must contain at least one non-empty tensor to calibrate on."
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.bits >= 32:
            return x
        if self.observing:
            self.observe(x)
            return x
        exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if not (exporting or torch.compiler.is_compiling() or self.calibrated):
            raise RuntimeError(
                "ActivationQuantizer used before calibration; run calibrate_activations first."
            )
        levels = float((1 << self.bits) - 1)
        scale = torch.clamp((self.hi - self.lo) / levels, min=1e-12)
        quantized = torch.clamp(torch.round((x - self.lo) / scale), 0.0, levels) * scale + self.lo
        if self.training:
            return straight_through(x, quantized)
        return quantized

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def _quantize_first_input(module: nn.Module, args: tuple) -> tuple | None:
    if not args:
        return None
    return (getattr(module, ACTIVATION_QUANT_NAME)(args[0]), *args[1:])


def attach_activation_quant(module: nn.Module, bits: int) -> ActivationQuantizer:
    """Fake-quantise ``module``'s first input to ``bits`` bits; returns the quantiser.

    The quantiser becomes the submodule ``module.input_quant`` (so its ``lo``/``hi``
    buffers appear in the state dict as ``<name>.input_quant.lo``/``.hi``) and runs in a
    forward pre-hook; the module keeps its class and name. Sets
    ``module.activation_bits = bits`` and ``module.weight_bits`` to 32 if not yet set.
    """
    if hasattr(module, ACTIVATION_QUANT_NAME):
        raise ValueError(
            f"{type(module).__name__} already has an activation quantiser "
            f"`{ACTIVATION_QUANT_NAME}`."
        )
    quantizer = ActivationQuantizer(bits)
    param = next(iter(module.parameters()), None)
    if param is not None:
        quantizer.to(param.device)
    quantizer.train(module.training)
    module.add_module(ACTIVATION_QUANT_NAME, quantizer)
    module.register_forward_pre_hook(_quantize_first_input)
    module.activation_bits = bits
    if not hasattr(module, "weight_bits"):
        module.weight_bits = 32
    return quantizer


def remove_activation_quant(module: nn.Module) -> None:
    """Undo :func:`attach_activation_quant`; ``module.activation_bits`` becomes 32."""
    if not isinstance(getattr(module, ACTIVATION_QUANT_NAME, None), ActivationQuantizer):
        raise ValueError(f"{type(module).__name__} has no activation quantiser to remove.")
    for key, hook in list(module._forward_pre_hooks.items()):
        if hook is _quantize_first_input:
            del module._forward_pre_hooks[key]
    delattr(module, ACTIVATION_QUANT_NAME)
    module.activation_bits = 32


def calibrate_activations(model: nn.Module, batches: Iterable[Tensor]) -> None:
    """Run ``model`` (eval mode, no grad) over ``batches`` to set every activation range.

    Every :class:`ActivationQuantizer` in ``model`` is reset, observes its inputs (running
    min/max) over all batches, and is then frozen. A batch that is a tuple or list is
    unpacked into positional arguments. The model's train/eval mode is restored.

    Raises:
        ValueError: if ``batches`` is empty or a quantiser saw no data.
    """
    quantizers = {
        name: m for name, m in model.named_modules() if isinstance(m, ActivationQuantizer)
    }
    was_training = model.training
    model.eval()
    for quantizer in quantizers.values():
        quantizer.reset()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                model(*batch) if isinstance(batch, (tuple, list)) else model(batch)
                seen += 1
    finally:
        for quantizer in quantizers.values():
            quantizer.freeze()
        model.train(was_training)
    if seen == 0:
        raise ValueError("`batches` must yield at least one batch to calibrate on.")
    unseen = [name for name, q in quantizers.items() if q.bits < 32 and not q.calibrated]
    if unseen:
        raise ValueError(f"These activation quantisers saw no data during calibration: {unseen}.")
