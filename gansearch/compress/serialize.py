"""The stored form of a compressed generator: exactly the tensors an artifact holds.

:func:`encoded_state` is the storage view (bit-packed weight codes, codebook indices and
centroids, low-rank factors, biases and norm tensors in the plan's ``norm_dtype``,
activation ranges); :meth:`~gansearch.compress.apply.CompressedGenerator.stored_nbytes` is
the sum of its sizes, so the cost the search optimises is what export writes, byte for
byte. :func:`encoding_manifest` is the JSON that describes it, and
:func:`restore_encoded_state` is its inverse (used by
:func:`gansearch.compress.artifact.load`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gansearch.compress.actquant import ACTIVATION_QUANT_NAME
from gansearch.compress.dependency import COMPRESSIBLE_TYPES
from gansearch.compress.encodings import decode_weight, parse_encoding, unpack_bits
from gansearch.compress.fakequant import (
    AffineParametrization,
    CodebookParametrization,
    WeightEncodingParametrization,
    encoded_weight,
)
from gansearch.compress.lowrank import factor_names
from gansearch.compress.plan import FLOAT_ACTIVATION_BITS
from gansearch.errors import GansearchError

if TYPE_CHECKING:
    from gansearch.compress.apply import CompressedGenerator

MANIFEST_VERSION = 1
NORM_TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class EncodedStateError(GansearchError):
    """Stored tensors that do not fit the module they are restored into."""


def weight_layers(model: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    """The Conv/Linear module(s) holding layer ``name``'s weight: itself, or its two factors."""
    module = model.get_submodule(name)
    if isinstance(module, COMPRESSIBLE_TYPES):
        return [(name, module)]
    if isinstance(module, nn.Sequential) and len(module) == 2:
        return list(zip(factor_names(name), module, strict=True))
    raise GansearchError(
        f"layer '{name}' is a {type(module).__name__}, neither a Conv/Linear layer nor a "
        "low-rank factorisation of one."
    )


def encoded_state(compressed: CompressedGenerator) -> dict[str, torch.Tensor]:
    """Exactly the tensors stored for ``compressed`` (name -> payload tensor).

    * ``f"{layer}.weight.{key}"``: the encoded weight's payload (``EncodedTensor.tensors``
      of :func:`~gansearch.compress.fakequant.encoded_weight`); for a factorised layer,
      ``layer`` is each factor ``name.0`` / ``name.1``;
    * ``f"{layer}.bias"`` and norm ``weight`` / ``bias`` / ``running_mean`` /
      ``running_var``: in the plan's ``norm_dtype``;
    * activation ranges: the float32 ``lo`` / ``hi`` buffers of each input quantiser,
      under their state_dict names (``f"{module}.input_quant.lo"`` / ``.hi``);
    * any other parameter or persistent buffer: unchanged, under its state_dict name.

    Non-persistent buffers (not in ``state_dict()``; the constructor rebuilds them) and
    ``num_batches_tracked`` are not stored. The sum of the tensors' sizes is
    :meth:`~gansearch.compress.apply.CompressedGenerator.stored_nbytes`.
    """
    model = compressed.module
    dtype = NORM_TORCH_DTYPES[compressed.plan.norm_dtype]
    state: dict[str, torch.Tensor] = {}
    covered: set[int] = set()

    for layer in compressed.structure.layers:
        for qualified, module in weight_layers(model, layer.name):
            for key, tensor in encoded_weight(module).tensors.items():
                state[f"{qualified}.weight.{key}"] = tensor
            if parametrize.is_parametrized(module, "weight"):
                owner: nn.Module = module.parametrizations.weight
                covered.update(id(t) for t in (*owner.parameters(), *owner.buffers()))
            else:
                covered.add(id(module.weight))
            if module.bias is not None:
                state[f"{qualified}.bias"] = module.bias.detach().to(dtype)
                covered.add(id(module.bias))
    for norm in compressed.structure.norms:
        module = model.get_submodule(norm.name)
        for key in ("weight", "bias", "running_mean", "running_var"):
            tensor = getattr(module, key, None)
            if tensor is not None:
                state[f"{norm.name}.{key}"] = tensor.detach().to(dtype)
                covered.add(id(tensor))
    # What is stored is what state_dict() holds: a non-persistent buffer is rebuilt by the
    # module's constructor, as gansearch.evaluators.cost.stored_bytes counts it.
    rest = {id(t) for t in model.state_dict(keep_vars=True).values()} - covered
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if id(tensor) in rest and not name.endswith("num_batches_tracked"):
            state[name] = tensor.detach()
    return state


def encoding_manifest(compressed: CompressedGenerator) -> dict[str, Any]:
    """JSON-able metadata to rebuild ``compressed`` from :func:`encoded_state`."""
    model = compressed.module
    weights: dict[str, Any] = {}
    factorized: dict[str, Any] = {}
    activations: dict[str, Any] = {}
    for layer in compressed.structure.layers:
        pairs = weight_layers(model, layer.name)
        if len(pairs) == 2:
            factorized[layer.name] = {
                "rank": compressed.plan.layer(layer.name).rank,
                "factors": [name for name, _ in pairs],
            }
        for qualified, module in pairs:
            encoded = encoded_weight(module)
            weights[qualified] = {
                "layer": layer.name,
                "type": type(module).__name__,
                "spec": encoded.spec,
                "shape": list(encoded.shape),
                "channel_axis": encoded.channel_axis,
                "bias": module.bias is not None,
            }
        bits = compressed.plan.layer(layer.name).activation_bits
        if bits != FLOAT_ACTIVATION_BITS:
            where = pairs[0][0]
            activations[layer.name] = {
                "bits": bits,
                "module": where,
                "range": [
                    f"{where}.{ACTIVATION_QUANT_NAME}.lo",
                    f"{where}.{ACTIVATION_QUANT_NAME}.hi",
                ],
            }
    state = encoded_state(compressed)
    return {
        "version": MANIFEST_VERSION,
        "plan": compressed.plan.to_dict(),
        "norm_dtype": compressed.plan.norm_dtype,
        "weights": weights,
        "factorized": factorized,
        "activations": activations,
        "tensors": {
            name: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
            for name, t in sorted(state.items())
        },
        "stored_nbytes": sum(t.numel() * t.element_size() for t in state.values()),
    }


@torch.no_grad()
def restore_encoded_state(
    model: nn.Module, stored: Mapping[str, Tensor], layer_specs: Mapping[str, Any]
) -> None:
    """Copy stored tensors into ``model``, the inverse of :func:`encoded_state`.

    ``model`` must be the same plan applied to the same teacher architecture, so its tree
    already matches ``stored``. Each encoded weight is decoded into the parametrisation's
    ``original``, and the parametrisation's own state (``scale`` / ``zero`` of an affine
    code, centroids and assignment of a codebook) is taken from the payload, never refitted,
    so re-encoding the restored module reproduces ``stored`` exactly.

    Args:
        model: the rebuilt module (``CompressedGenerator.module``).
        stored: what :func:`encoded_state` returned when it was written.
        layer_specs: ``encoding_manifest(...)["weights"]`` of the written generator.

    Raises:
        EncodedStateError: for a tensor or layer that does not fit ``model``.
    """
    consumed: set[str] = set()
    for qualified, spec in layer_specs.items():
        module = model.get_submodule(qualified)
        prefix = f"{qualified}.weight."
        payload = {n[len(prefix) :]: t for n, t in stored.items() if n.startswith(prefix)}
        consumed.update(prefix + key for key in payload)
        try:
            encoding = parse_encoding(spec["spec"])
            shape = tuple(int(s) for s in spec["shape"])
            decoded = decode_weight(spec["spec"], shape, int(spec["channel_axis"]), payload)
        except (KeyError, TypeError, ValueError) as error:
            raise EncodedStateError(f"layer '{qualified}' cannot be decoded ({error})") from None
        if not parametrize.is_parametrized(module, "weight"):
            module.weight.copy_(decoded.to(module.weight.dtype))
            continue
        parametrizations = module.parametrizations.weight
        parametrizations.original.copy_(decoded.to(parametrizations.original.dtype))
        for item in parametrizations:
            if not isinstance(item, WeightEncodingParametrization):
                continue
            if item.encoding != encoding:
                raise EncodedStateError(
                    f"layer '{qualified}' is stored as {spec['spec']!r} but the plan "
                    f"gives {item.encoding.spec!r}"
                )
            if isinstance(item, AffineParametrization):
                item.scale.copy_(payload["scale"].to(item.scale.dtype))
                item.zero.copy_(payload["zero"].to(item.zero.dtype))
            elif isinstance(item, CodebookParametrization):
                item.centroids.copy_(payload["centroids"].to(item.centroids.dtype))
                count = math.prod(shape)
                indices = unpack_bits(payload["codes"], encoding.index_bits, count)
                item.indices.copy_(indices.to(item.indices.dtype))
    targets = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    for name, tensor in stored.items():
        if name in consumed:
            continue
        target = targets.get(name)
        if target is None or target.shape != tensor.shape:
            raise EncodedStateError(
                f"stored tensor {name!r} has no place in the rebuilt generator; "
                "export the artifact again."
            )
        target.copy_(tensor.to(target.dtype))
