"""Cost of a generator besides its MACs: parameters, BitOps, stored bytes, latency.

MACs are counted in :mod:`gansearch.evaluators.macs`, whose docstring states the counting
policy; BitOps weight those counts by bit widths.

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
One rule, applied by ``gansearch evaluate``, the search and export alike: **what is
stored is what ``state_dict()`` holds** - parameters and persistent buffers. A
non-persistent buffer (``register_buffer(..., persistent=False)``, e.g. a positional or
window table) is not stored: the module's constructor recomputes it when the generator is
rebuilt, exactly as ``load_state_dict`` expects. BatchNorm's ``num_batches_tracked`` is
left out too, since it matters only to training. A tensor shared between modules is
counted once.

:func:`stored_bytes` applies the rule with public torch APIs only (``state_dict(
keep_vars=True)`` says which of ``named_parameters`` / ``named_buffers`` are state). A
module that implements :class:`StoredSize` reports its whole subtree itself (a
compressed generator: :func:`~gansearch.compress.serialize.encoded_state`, which follows
the same rule, so its bytes are what export writes). Any other module contributes
``numel * element_size`` of its own stored tensors. A module whose ``state_dict`` holds
tensors that are neither its parameters nor its buffers (a custom
``_save_to_state_dict``) should implement :class:`StoredSize`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from gansearch.compress.batches import as_inputs
from gansearch.evaluators.macs import batch_size_of, layer_macs

__all__ = [
    "DEFAULT_BITS",
    "LatencyStats",
    "StoredSize",
    "bitops",
    "count_params",
    "measure_latency",
    "num_threads",
    "stored_bytes",
    "stored_bytes_by_layer",
]

DEFAULT_BITS = 32
"""Weight and activation bits assumed for a module without ``weight_bits`` / ``activation_bits``."""


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


def bitops(model: nn.Module, example_input: Tensor | tuple[Tensor, ...]) -> int:
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


@runtime_checkable
class StoredSize(Protocol):
    """A module that knows the exact size of its own encoded state.

    Its report covers the module's whole subtree: its own parameters and buffers and
    those of all its children. :func:`stored_bytes` does not descend into it.
    """

    def stored_nbytes(self) -> int:
        """Return the number of bytes of this module's encoded state."""
        ...


# Every BatchNorm class torch has (their common base, ``_BatchNorm``, is private).
_BATCH_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
)


def _state_tensor_ids(model: nn.Module) -> frozenset[int]:
    """Identities of the tensors ``model.state_dict()`` holds: its stored tensors.

    ``keep_vars=True`` returns the parameter and buffer objects themselves, so a buffer
    registered with ``persistent=False`` is the one kind of parameter or buffer missing.
    """
    return frozenset(id(tensor) for tensor in model.state_dict(keep_vars=True).values())


def _own_stored_tensors(module: nn.Module, stored: frozenset[int]) -> Iterator[Tensor]:
    """The module's own (non-recursive) tensors that are in ``stored`` (its state_dict)."""
    for name, tensor in [
        *module.named_parameters(recurse=False),
        *module.named_buffers(recurse=False),
    ]:
        if id(tensor) not in stored:
            continue
        if name == "num_batches_tracked" and isinstance(module, _BATCH_NORMS):
            continue
        yield tensor


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
    its own tensors that ``model.state_dict()`` holds (parameters and persistent buffers;
    non-persistent buffers are recomputed by the constructor, not stored), without
    BatchNorm's ``num_batches_tracked``. A tensor shared by several modules is counted
    once, at the first module that holds it.

    Args:
        model: The network to measure.

    Returns:
        A mapping from qualified module name (``""`` for the root) to bytes. It has an
        entry for each StoredSize module and for each module with its own stored tensors.

    Raises:
        ValueError: If a ``stored_nbytes`` method returns something other than a
            non-negative int.
    """
    stored = _state_tensor_ids(model)
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
        for tensor in _own_stored_tensors(module, stored):
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

    This is the sum of :func:`stored_bytes_by_layer`: the bytes of ``model.state_dict()``
    (each tensor once, without BatchNorm's ``num_batches_tracked``). A float32 model
    takes 4 bytes per parameter, plus its BatchNorm running statistics and any other
    persistent buffer; a non-persistent buffer is not stored.

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
    model: nn.Module,
    example_input: Tensor | tuple[Tensor, ...],
    *,
    runs: int,
    warmup: int,
    threads: int,
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
    batch = batch_size_of(example_input)
    inputs = as_inputs(example_input)
    times_ms: list[float] = []
    with num_threads(threads), _eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        for _ in range(runs):
            start = time.perf_counter()
            model(*inputs)
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
