"""Hardware-independent and measured cost of a generator: MACs, params, bytes, BitOps, latency.

MAC counting policy
-------------------
thop (``thop.profile``, pinned) is the one counter. :func:`layer_macs` runs
``thop.profile`` on a deep copy of the model (so the caller's model never gains thop's
``total_ops`` buffers or hooks), in eval mode, under ``torch.no_grad``, with thop's
printing off. Every result is **per sample**: the count for ``example_input`` divided
by its batch size.

Which rule counts a module is decided by the nearest class in its MRO, so subclasses
(``class QConv2d(nn.Conv2d)``, ``torch.nn.utils.parametrize``'s ``ParametrizedConv2d``)
are counted like their base class. thop itself looks up ``type(m)`` exactly and would
count such subclasses as zero. The rules, in order of precedence:

* **The** ``count_macs`` **protocol.** A module whose class defines
  ``count_macs(self, x, y) -> int`` is counted by that method alone and its subtree is
  not descended into. The method receives the forward hook's arguments (``x``: the tuple
  of positional inputs, ``y``: the output) and returns the MACs of the whole call, for
  all samples, like thop's own rules. Wrappers such as a quantized conv or a low-rank
  pair use this protocol.
* **Conv{1,2,3}d and Linear**: thop's rules. Conv gives output elements x
  ``C_in / groups`` x prod(kernel), and Linear gives output elements x ``in_features``.
* **ConvTranspose{1,2,3}d**: input elements x ``C_out / groups`` x prod(kernel).
  thop applies the Conv formula to transposed convs, which overcounts a strided one by
  the product of its strides. Each input element is scattered through the kernel into
  ``C_out / groups`` channels. Outputs later cropped by ``padding`` are still counted.
* **Bias**: not counted. Neither thop's rules nor ours count it: adding a bias is an
  add, not a multiply-accumulate.
* **BatchNorm** (and its subclasses, e.g. SyncBatchNorm): 0. At inference, BatchNorm
  folds into the preceding conv or linear layer.
* **InstanceNorm, LayerNorm and GroupNorm**: thop's ``count_normalization``, which is
  2 per input element, or 4 when affine. These norms use statistics of the input itself,
  so they cannot be folded. thop has no rule for GroupNorm, so we apply the same one.
* **Activations**: 0. That covers ReLU, LeakyReLU, PReLU, Softmax and the modules thop
  does not know, such as Tanh, Sigmoid and GELU. For PReLU and Softmax we override
  thop's non-zero counts.
* **Pooling and Upsample**: thop's rules, unchanged.
* **Functional operations**: 0. thop sees only module calls, so residual ``x + h``
  adds, ``torch.cat``, ``F.interpolate`` and ``torch.bmm`` inside ``forward`` are not
  counted. An element-wise add is not a multiply-accumulate anyway.
* **Any other leaf module**: 0.

A module called several times in one forward is counted once per call.

BitOps
------
For each layer, :func:`bitops` multiplies the layer's MACs by its weight bits and by
its activation bits, then sums over the layers (BOPs, Baskin et al., "UNIQ: Uniform
Noise Injection for Non-Uniform Quantization of Neural Networks", 2018; the BitOps
objective of Wang et al., "APQ: Joint Search for Network Architecture, Pruning and
Quantization Policy", CVPR 2020). A module gives its bit widths through the optional
attributes ``weight_bits`` and ``activation_bits``. Each defaults to 32, the width of
float32.

Stored bytes
------------
:func:`stored_bytes` counts the bytes of the encoded state needed at inference. A
module that implements :class:`StoredSize` reports its whole subtree itself. Any other
module contributes ``numel * element_size`` of its own parameters and persistent
buffers. BatchNorm's ``num_batches_tracked`` is left out, since it matters only to
training. A tensor shared between modules is counted once.
"""

from __future__ import annotations

import copy
import importlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "LatencyStats",
    "StoredSize",
    "bitops",
    "count_macs",
    "count_params",
    "layer_macs",
    "measure_latency",
    "stored_bytes",
    "stored_bytes_by_layer",
]

DEFAULT_BITS = 32
"""Weight and activation bits assumed for a module without ``weight_bits`` / ``activation_bits``."""

# A thop counting rule: a forward hook that adds the call's ops to ``m.total_ops``.
_Rule = Callable[[nn.Module, tuple[Any, ...], Any], None]


@runtime_checkable
class StoredSize(Protocol):
    """A module that knows the exact size of its own encoded state.

    Its report covers the module's whole subtree: its own parameters and buffers and
    those of all its children. :func:`stored_bytes` does not descend into it.
    """

    def stored_nbytes(self) -> int:
        """Return the number of bytes of this module's encoded state."""
        ...


# ---------------------------------------------------------------------------------------
# MACs
# ---------------------------------------------------------------------------------------


def _count_zero(m: nn.Module, x: tuple[Any, ...], y: Any) -> None:
    """Count nothing (folded BatchNorm, activations)."""


def _count_conv_transpose(m: nn.Module, x: tuple[Any, ...], y: Any) -> None:
    """Count a transposed conv as input elements x (C_out / groups) x prod(kernel).

    The weight has shape ``(C_in, C_out / groups, *kernel)``, so the MACs per input
    element are the product of ``weight.shape[1:]``.
    """
    m.total_ops += x[0].numel() * math.prod(m.weight.shape[1:])


def _thop() -> Any:
    """Import thop, silencing its import-time distutils DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import thop

        # `thop.profile` the attribute is the function; the module holds `register_hooks`.
        thop_profile_module = importlib.import_module("thop.profile")
    return thop, thop_profile_module


def _rule_table() -> dict[type, _Rule]:
    """Map module classes to counting rules: thop's table with our policy overrides."""
    _, thop_profile_module = _thop()
    from thop.vision.basic_hooks import count_normalization

    table: dict[type, _Rule] = dict(thop_profile_module.register_hooks)
    # Containers are descended into, never counted as a unit.
    for container in (nn.Sequential, nn.ModuleList, nn.ModuleDict):
        table.pop(container, None)
    overrides: dict[type, _Rule] = {
        nn.ConvTranspose1d: _count_conv_transpose,
        nn.ConvTranspose2d: _count_conv_transpose,
        nn.ConvTranspose3d: _count_conv_transpose,
        nn.BatchNorm1d: _count_zero,
        nn.BatchNorm2d: _count_zero,
        nn.BatchNorm3d: _count_zero,
        nn.SyncBatchNorm: _count_zero,
        nn.GroupNorm: count_normalization,
        nn.PReLU: _count_zero,
        nn.Softmax: _count_zero,
    }
    table.update(overrides)
    return table


def _protocol_rule(m: nn.Module, x: tuple[Any, ...], y: Any) -> None:
    """Count a module through its own ``count_macs(x, y)`` method."""
    macs = m.count_macs(x, y)
    if isinstance(macs, bool) or not isinstance(macs, int) or macs < 0:
        raise ValueError(
            f"`{type(m).__name__}.count_macs` must return a non-negative int, but got {macs!r}."
        )
    m.total_ops += macs


def _rule_for(module: nn.Module, table: dict[type, _Rule]) -> _Rule | None:
    """The rule that counts ``module``: its ``count_macs`` method, else its nearest MRO class."""
    if callable(getattr(type(module), "count_macs", None)):
        return _protocol_rule
    for cls in type(module).__mro__:
        if cls in table:
            return table[cls]
    return None


def _counting_units(
    model: nn.Module, table: dict[type, _Rule]
) -> Iterator[tuple[str, nn.Module, _Rule | None]]:
    """Yield the modules the walk stops at, with their rules.

    The walk stops at modules with a rule and does not descend into them. It also stops
    at leaves without a rule, which count 0. Containers without a rule are descended into.
    """
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        rule = _rule_for(module, table)
        children = list(module.named_children())
        if rule is not None or not children:
            yield name, module, rule
            continue
        prefix = f"{name}." if name else ""
        stack.extend((prefix + child_name, child) for child_name, child in reversed(children))


def _batch_size(example_input: Tensor) -> int:
    if not isinstance(example_input, Tensor):
        raise TypeError(
            f"`example_input` must be a torch.Tensor, but got {type(example_input).__name__}."
        )
    if example_input.dim() < 1 or example_input.shape[0] < 1:
        raise ValueError(
            "`example_input` must have a batch dimension of size >= 1, "
            f"but got shape {tuple(example_input.shape)}."
        )
    return int(example_input.shape[0])


def _layer_macs_of_copy(model: nn.Module, example_input: Tensor) -> dict[str, int]:
    """Run thop on ``model`` (already a private copy) and return per-unit MACs per sample."""
    thop, _ = _thop()
    batch = _batch_size(example_input)
    table = _rule_table()
    units = list(_counting_units(model, table))
    rules = {module: rule for _, module, rule in units if rule is not None}
    totals: dict[nn.Module, float] = {module: 0.0 for module in rules}

    def record(m: nn.Module, x: tuple[Any, ...], y: Any) -> None:
        # Types are shared between units and modules inside a protocol module's
        # subtree; only units are counted.
        rule = rules.get(m)
        if rule is None:
            return
        before = float(m.total_ops)
        rule(m, x, y)
        totals[m] += float(m.total_ops) - before

    custom_ops = {type(module): record for module in rules}
    model.eval()
    with torch.no_grad():
        # thop's own totals are not used: its aggregation descends into nn.Sequential
        # even when the Sequential has a rule, which would double-count a protocol
        # module that subclasses Sequential.
        thop.profile(model, inputs=(example_input,), custom_ops=custom_ops, verbose=False)
    return {
        name: round(totals[module] / batch) if module in totals else 0 for name, module, _ in units
    }


def layer_macs(model: nn.Module, example_input: Tensor) -> dict[str, int]:
    """Count the MACs per sample of each counting unit, using thop.

    A counting unit is a module with a counting rule (its subtree is not descended into)
    or a leaf without one (0 MACs). The policy is in this module's docstring. The
    caller's model is not modified: counting runs on a deep copy.

    Args:
        model: The network to count.
        example_input: A batch fed as ``model(example_input)``; the counts are divided by
            its first dimension.

    Returns:
        A mapping from qualified module name (``""`` for the root) to MACs per sample,
        in module order. The values sum to :func:`count_macs`.

    Raises:
        TypeError: If ``example_input`` is not a tensor.
        ValueError: If ``example_input`` has no batch dimension, or a ``count_macs``
            method returns something other than a non-negative int.
    """
    _batch_size(example_input)
    return _layer_macs_of_copy(copy.deepcopy(model), example_input)


def count_macs(model: nn.Module, example_input: Tensor) -> int:
    """Count multiply-accumulates per sample of one forward pass, using thop.

    This is the sum of :func:`layer_macs`. The counting policy (transposed convs, folded
    BatchNorm, bias, activations, residual adds, the ``count_macs`` protocol) is in this
    module's docstring.

    Args:
        model: The network to count. It is not modified.
        example_input: A batch fed as ``model(example_input)``.

    Returns:
        MACs for one sample.
    """
    return sum(layer_macs(model, example_input).values())


def count_params(model: nn.Module) -> int:
    """Count the parameters of ``model``. A shared parameter is counted once.

    Args:
        model: The network to count.

    Returns:
        The total number of parameter elements.
    """
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------
# BitOps
# ---------------------------------------------------------------------------------------


def _bits(module: nn.Module, attribute: str, name: str) -> float:
    bits = getattr(module, attribute, DEFAULT_BITS)
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or not bits > 0:
        raise ValueError(
            f"`{attribute}` must be a positive number, but got {bits!r} on module {name!r} "
            f"({type(module).__name__})."
        )
    return bits


def bitops(model: nn.Module, example_input: Tensor) -> int:
    """Count BitOps per sample: the sum over layers of MACs x weight bits x activation bits.

    BOPs are defined in Baskin et al., "UNIQ", 2018, and used as the BitOps objective in
    Wang et al., "APQ", CVPR 2020. Each counting unit of :func:`layer_macs` gives its bit
    widths through the optional attributes ``weight_bits`` and ``activation_bits``.
    Each defaults to 32 (float32), so a float model has ``count_macs * 32 * 32`` BitOps.

    Args:
        model: The network to count. It is not modified.
        example_input: A batch fed as ``model(example_input)``.

    Returns:
        BitOps for one sample, rounded to an int (bit widths may be fractional, e.g. the
        log2 of a codebook size).

    Raises:
        ValueError: If a ``weight_bits`` or ``activation_bits`` attribute is not a
            positive number.
    """
    total = 0.0
    for name, macs in layer_macs(model, example_input).items():
        if macs == 0:
            continue
        module = model.get_submodule(name)
        total += macs * _bits(module, "weight_bits", name) * _bits(module, "activation_bits", name)
    return round(total)


# ---------------------------------------------------------------------------------------
# Stored bytes
# ---------------------------------------------------------------------------------------


def _own_stored_tensors(module: nn.Module) -> Iterator[Tensor]:
    """The module's own (non-recursive) parameters and persistent buffers."""
    yield from module.parameters(recurse=False)
    # `_non_persistent_buffers_set` is how nn.Module itself decides what state_dict keeps.
    non_persistent = module._non_persistent_buffers_set
    for buffer_name, buffer in module.named_buffers(recurse=False):
        if buffer_name in non_persistent:
            continue
        if buffer_name == "num_batches_tracked" and isinstance(
            module, nn.modules.batchnorm._BatchNorm
        ):
            continue
        yield buffer


def _stored_size_of(module: nn.Module, name: str) -> int:
    nbytes = module.stored_nbytes()
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(
            f"`{type(module).__name__}.stored_nbytes` must return a non-negative int, "
            f"but got {nbytes!r} (module {name!r})."
        )
    return nbytes


def stored_bytes_by_layer(model: nn.Module) -> dict[str, int]:
    """Return the stored bytes of each module that holds encoded state.

    A :class:`StoredSize` module reports itself, covering its whole subtree, and the
    walk does not descend into it. Any other module counts ``numel * element_size`` of
    its own parameters and persistent buffers, without BatchNorm's
    ``num_batches_tracked``. A tensor shared by several modules is counted once, at the
    first module that holds it.

    Args:
        model: The network to measure.

    Returns:
        A mapping from qualified module name (``""`` for the root) to bytes. It has an
        entry for each StoredSize module and for each module with its own stored tensors.

    Raises:
        ValueError: If a ``stored_nbytes`` method returns something other than a
            non-negative int.
    """
    seen: set[int] = set()
    sizes: dict[str, int] = {}
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        if isinstance(module, StoredSize):
            sizes[name] = _stored_size_of(module, name)
            continue
        own = 0
        has_state = False
        for tensor in _own_stored_tensors(module):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            own += tensor.numel() * tensor.element_size()
            has_state = True
        if has_state:
            sizes[name] = own
        prefix = f"{name}." if name else ""
        children = list(module.named_children())
        stack.extend((prefix + child_name, child) for child_name, child in reversed(children))
    return sizes


def stored_bytes(model: nn.Module) -> int:
    """Return the exact bytes of the encoded state ``model`` needs at inference.

    This is the sum of :func:`stored_bytes_by_layer`. A float32 model takes 4 bytes
    per parameter, plus its BatchNorm running statistics.

    Args:
        model: The network to measure.

    Returns:
        Total bytes.
    """
    return sum(stored_bytes_by_layer(model).values())


# ---------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock latency of one forward pass of a whole batch, in milliseconds."""

    median_ms: float
    q25_ms: float
    q75_ms: float
    min_ms: float
    runs: int
    threads: int
    batch_size: int

    @property
    def iqr_ms(self) -> float:
        """Interquartile range, ``q75_ms - q25_ms``."""
        return self.q75_ms - self.q25_ms


@contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Set torch's intra-op thread count and restore the previous value on exit."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module in eval mode and restore each module's own flag on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name} >= {minimum}` must hold for an int, but got {name}={value!r}.")


def measure_latency(
    model: nn.Module, example_input: Tensor, *, runs: int, warmup: int, threads: int
) -> LatencyStats:
    """Measure the CPU latency of ``model(example_input)``.

    The model runs in eval mode under ``torch.inference_mode``. It is called ``warmup``
    times untimed, then ``runs`` times, each call timed with ``time.perf_counter``. The
    torch thread count is set to ``threads`` and restored on exit, as is each module's
    training flag.

    Args:
        model: The network to time.
        example_input: The batch fed at each call.
        runs: Number of timed calls, at least 1.
        warmup: Number of untimed calls before timing, at least 0.
        threads: Intra-op threads for ``torch.set_num_threads``, at least 1.

    Returns:
        The median, quartiles (linear interpolation) and minimum of the timed calls.

    Raises:
        ValueError: If ``runs``, ``warmup`` or ``threads`` is out of range.
    """
    _check_int("runs", runs, 1)
    _check_int("warmup", warmup, 0)
    _check_int("threads", threads, 1)
    batch = _batch_size(example_input)
    times_ms: list[float] = []
    with num_threads(threads), _eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            model(example_input)
        for _ in range(runs):
            start = time.perf_counter()
            model(example_input)
            times_ms.append((time.perf_counter() - start) * 1e3)
    q25, median, q75 = np.percentile(times_ms, [25.0, 50.0, 75.0])
    return LatencyStats(
        median_ms=float(median),
        q25_ms=float(q25),
        q75_ms=float(q75),
        min_ms=min(times_ms),
        runs=runs,
        threads=threads,
        batch_size=batch,
    )
