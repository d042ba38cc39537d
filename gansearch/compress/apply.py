"""Apply a :class:`CompressionPlan` to a teacher: one verb, a registry of transforms.

Shaped like torchao's ``quantize_(model, config)``: each transform is driven by a frozen
config dataclass and implemented by a handler registered for that config type with
:func:`register_transform`; :func:`apply_transform` dispatches on the config's type and,
unlike torchao, names the config and lists the known ones when no handler exists.

:func:`apply_plan` turns a plan into configs and applies them in a fixed order on a deep
copy of the teacher (the teacher is never modified):

1. :class:`PruneConfig` - structural channel pruning (physically fewer channels);
2. :class:`LowRankConfig` - SVD factorisation (layer ``name`` becomes a Sequential with
   factors ``name.0`` / ``name.1``);
3. :class:`WeightEncodingConfig` - weight encodings (simulated numerics through a
   parametrisation; on a factorised layer, on both factors), and rounding of biases and
   norm parameters / running statistics to ``norm_dtype``;
4. :class:`ActivationQuantConfig` - simulated quantisation of each listed layer's input
   activations (on a factorised layer, the first factor's input), calibrated on the given
   batches (the example input if none are given).

Stored bytes are exact: :func:`~gansearch.compress.serialize.encoded_state` returns
exactly the tensors an exporter writes (encoded weight payloads, biases and norm tensors
in ``norm_dtype``, activation ranges as float32 pairs, anything else unchanged;
``num_batches_tracked`` excluded), and :meth:`CompressedGenerator.stored_nbytes` is the
sum of their sizes. Biases are stored in
``norm_dtype`` (they are per-channel vectors like norm parameters).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from gansearch.compress.actquant import attach_activation_quant, calibrate_activations
from gansearch.compress.dependency import COMPRESSIBLE_TYPES, NORM_TYPES
from gansearch.compress.deploy import deployment_copy
from gansearch.compress.encodings import FloatEncoding, parse_encoding
from gansearch.compress.fakequant import attach_weight_encoding
from gansearch.compress.groups import describe
from gansearch.compress.lowrank import factorize
from gansearch.compress.plan import (
    FLOAT_ACTIVATION_BITS,
    CompressionPlan,
    PlanNotSupportedError,
    validate,
)
from gansearch.compress.prune import prune_channels, removed_channels
from gansearch.compress.serialize import NORM_TORCH_DTYPES, encoded_state, weight_layers
from gansearch.compress.structure import GeneratorStructure
from gansearch.errors import GansearchError

if TYPE_CHECKING:
    from gansearch.compress.supernet import Supernet


class UnknownTransformError(GansearchError):
    """A config type with no registered transform handler."""


# ---------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PruneConfig:
    """Remove the channels where ``masks[group]`` is False (groups not listed keep all)."""

    structure: GeneratorStructure
    masks: Mapping[str, tuple[bool, ...]]
    example_input: Any


@dataclass(frozen=True)
class LowRankConfig:
    """Factorise each listed layer at the given rank (>= 1)."""

    ranks: Mapping[str, int]


@dataclass(frozen=True)
class WeightEncodingConfig:
    """Encode each listed layer's weight; store biases and norm tensors in ``norm_dtype``."""

    encodings: Mapping[str, str]
    norm_dtype: str = "float32"
    seed: int = 0


@dataclass(frozen=True, eq=False)
class ActivationQuantConfig:
    """Quantise each listed layer's input activations to ``bits[layer]`` bits (2..8)."""

    bits: Mapping[str, int]
    calibration_batches: tuple[Any, ...] = field(default_factory=tuple)


ConfigT = TypeVar("ConfigT")
Handler = Callable[[nn.Module, Any], nn.Module]
_HANDLERS: dict[type, Handler] = {}


def register_transform(config_type: type[ConfigT]) -> Callable[[Handler], Handler]:
    """Register ``handler(model, config) -> model`` for configs of ``config_type``."""

    def decorator(handler: Handler) -> Handler:
        _HANDLERS[config_type] = handler
        return handler

    return decorator


def known_transforms() -> list[str]:
    return sorted(t.__name__ for t in _HANDLERS)


def apply_transform(model: nn.Module, config: Any) -> nn.Module:
    """Apply one transform; returns the transformed model (possibly ``model`` itself).

    Raises:
        UnknownTransformError: when no handler is registered for ``type(config)``.
    """
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise UnknownTransformError(
            f"no transform is registered for config type {type(config).__name__!r}; "
            f"known config types are {known_transforms()}."
        )
    return handler(model, config)


# ---------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------


@register_transform(PruneConfig)
def _prune(model: nn.Module, config: PruneConfig) -> nn.Module:
    return prune_channels(model, config.structure, config.masks, config.example_input)


@register_transform(LowRankConfig)
def _low_rank(model: nn.Module, config: LowRankConfig) -> nn.Module:
    for name, rank in config.ranks.items():
        layer = model.get_submodule(name)
        _replace_submodule(model, name, factorize(layer, rank))
    return model


@register_transform(WeightEncodingConfig)
def _encode_weights(model: nn.Module, config: WeightEncodingConfig) -> nn.Module:
    for name, spec in config.encodings.items():
        encoding = parse_encoding(spec)
        if encoding == FloatEncoding(32):
            continue
        for _, module in weight_layers(model, name):
            attach_weight_encoding(module, encoding, seed=config.seed)
    _round_norm_and_bias_tensors(model, config.norm_dtype)
    return model


@register_transform(ActivationQuantConfig)
def _quantize_activations(model: nn.Module, config: ActivationQuantConfig) -> nn.Module:
    for name, bits in config.bits.items():
        attach_activation_quant(activation_module(model, name), bits)
    if config.bits:
        calibrate_activations(model, list(config.calibration_batches))
    return model


def _replace_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def round_to_norm_dtype(compressed: CompressedGenerator) -> CompressedGenerator:
    """Round ``compressed``'s biases and norm tensors to its plan's ``norm_dtype`` again.

    :func:`apply_plan` rounds them once, but a later step that writes them (BatchNorm
    recalibration after pruning, distillation) leaves float32 values, and a module scored
    with those is not the one an artifact stores. Call this after such steps, so that the
    scored module equals what :func:`~gansearch.compress.serialize.encoded_state` writes.
    A no-op for ``norm_dtype: float32``. Returns ``compressed`` (changed in place).
    """
    _round_norm_and_bias_tensors(compressed.module, compressed.plan.norm_dtype)
    return compressed


def _round_norm_and_bias_tensors(model: nn.Module, norm_dtype: str) -> None:
    dtype = NORM_TORCH_DTYPES[norm_dtype]
    if dtype == torch.float32:
        return
    with torch.no_grad():
        for tensor in _norm_and_bias_tensors(model):
            tensor.copy_(tensor.to(dtype).to(tensor.dtype))


def _norm_and_bias_tensors(model: nn.Module) -> Iterable[torch.Tensor]:
    for module in model.modules():
        if isinstance(module, NORM_TYPES):
            for tensor in (module.weight, module.bias, module.running_mean, module.running_var):
                if tensor is not None:
                    yield tensor
        elif isinstance(module, COMPRESSIBLE_TYPES) and module.bias is not None:
            yield module.bias


def activation_module(model: nn.Module, name: str) -> nn.Module:
    """Where layer ``name``'s input quantiser lives: the layer, or its first factor.

    (A quantiser cannot be a child of the factorised ``nn.Sequential`` itself, since the
    Sequential would run it as one more stage.)
    """
    return weight_layers(model, name)[0][1]


# ---------------------------------------------------------------------------------------
# apply_plan and the compressed generator
# ---------------------------------------------------------------------------------------


class CompressedGenerator(nn.Module):
    """A compressed copy of a teacher: ``module`` plus the plan and structure behind it."""

    def __init__(self, module: nn.Module, plan: CompressionPlan, structure: GeneratorStructure):
        super().__init__()
        self.module = module
        self.plan = plan
        self.structure = structure

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def deployment_module(self, **options: Any) -> nn.Module:
        """The network this candidate deploys as (and is timed as): a new eval-mode copy
        with weights dequantised and BatchNorm folded; ``options`` are those of
        :func:`~gansearch.compress.deploy.deployment_copy`."""
        return deployment_copy(self.module, **options)

    def stored_nbytes(self) -> int:
        """Exact bytes of :func:`encoded_state` (what an exporter writes)."""
        return sum(t.numel() * t.element_size() for t in encoded_state(self).values())

    def param_count(self) -> int:
        """Parameters of the (pruned / factorised) network, one per weight element.

        A parametrised (encoded) weight counts as its original shape; the encoding's own
        tensors (e.g. codebook centroids) are not counted here but in :meth:`stored_nbytes`.
        """
        total = sum(
            p.numel()
            for name, p in self.module.named_parameters()
            if ".parametrizations." not in f".{name}"
        )
        for module in self.module.modules():
            if parametrize.is_parametrized(module):
                total += sum(item.original.numel() for item in module.parametrizations.values())
        return total


def plan_configs(
    plan: CompressionPlan,
    structure: GeneratorStructure,
    example_input: Any,
    calibration_batches: Iterable[Any] | None = None,
) -> list[Any]:
    """The transform configs of ``plan``, in application order (steps doing nothing omitted)."""
    configs: list[Any] = []
    if removed_channels(structure, plan.masks):
        configs.append(PruneConfig(structure, dict(plan.masks), example_input))
    ranks = {name: lp.rank for name, lp in plan.layers.items() if lp.rank > 0}
    if ranks:
        configs.append(LowRankConfig(ranks))
    encodings = {name: lp.weight for name, lp in plan.layers.items() if lp.weight != "float32"}
    if encodings or plan.norm_dtype != "float32":
        configs.append(WeightEncodingConfig(encodings, plan.norm_dtype))
    bits = {
        name: lp.activation_bits
        for name, lp in plan.layers.items()
        if lp.activation_bits != FLOAT_ACTIVATION_BITS
    }
    if bits:
        batches = (
            tuple(calibration_batches) if calibration_batches is not None else (example_input,)
        )
        configs.append(ActivationQuantConfig(bits, batches))
    return configs


def apply_plan(
    teacher: nn.Module,
    plan: CompressionPlan,
    example_input: Any,
    *,
    calibration_batches: Iterable[Any] | None = None,
    structure: GeneratorStructure | None = None,
    supernet: Supernet | None = None,
) -> CompressedGenerator:
    """Compress a deep copy of ``teacher`` as ``plan`` says.

    Args:
        teacher: The generator (left unchanged).
        plan: The plan; validated against ``structure`` first.
        example_input: A batch the teacher accepts (for tracing, and the default
            calibration batch of activation quantisation).
        calibration_batches: Batches (inputs of the generator) to calibrate activation
            ranges on; defaults to ``[example_input]``.
        structure: ``describe(teacher, example_input)``, if already computed.
        supernet: the once-for-all supernet, for plans with ``widths``; the result is then
            pruned from the supernet's weights and its ``plan`` is in mask form.

    Raises:
        InvalidPlanError: if the plan does not fit the teacher.
        PlanNotSupportedError: for plans with supernet ``widths``.
    """
    if structure is None:
        structure = describe(teacher, example_input)
    validate(plan, structure)
    if plan.widths is not None:
        if supernet is None:
            raise PlanNotSupportedError(
                "the plan takes OFA `widths`, so it needs the supernet they come from: pass "
                "`supernet=` (see gansearch.compress.supernet.load_supernet)"
            )
        # Width w of a group = its first w channels in the supernet's importance order,
        # taken from the supernet's shared weights: the plan becomes masks on those weights.
        teacher = supernet.model
        plan = dataclasses.replace(plan, masks=supernet.keep_masks(plan.widths), widths=None)
    model = copy.deepcopy(teacher)
    for config in plan_configs(plan, structure, example_input, calibration_batches):
        model = apply_transform(model, config)
    return CompressedGenerator(model, plan, structure)
