"""Simulated (fake) quantisation of activations (survey Eq. 9-10).

:class:`ActivationQuantizer` is uniform affine fake-quantisation with a per-tensor range
``[lo, hi]`` found by a running min/max observer over calibration batches.
:func:`attach_activation_quant` puts one in front of a module (submodule ``input_quant``
plus a forward pre-hook on the first input), so the module keeps its class and name;
:func:`calibrate_activations` runs the calibration batches. In training the gradient is
the straight-through estimator, as for weights (:func:`~gansearch.compress.fakequant.
straight_through`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from gansearch.compress.fakequant import straight_through

ACTIVATION_QUANT_NAME = "input_quant"


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
