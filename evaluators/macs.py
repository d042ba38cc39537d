"""Multiply-accumulates per sample of one forward pass, counted with thop.

MAC counting policy
-------------------
thop (``thop.profile``, pinned) runs the count: :func:`layer_macs` calls ``thop.profile``
on a deep copy of the model (so the caller's model never gains thop's ``total_ops``
buffers or hooks), in eval mode, under ``torch.no_grad``, with thop's printing off. Every
result is **per sample**: the count for ``example_input`` divided by its batch size.

Only thop's public API is used: ``thop.profile(model, inputs, custom_ops=...)``. Its
built-in rule table is not public, so every rule below is written in this module (each a
line, thop 0.1.1's formula where the policy keeps thop's count) and given to thop as a
custom op.

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
* **Conv{1,2,3}d and Linear**: thop's formulas. Conv gives output elements x
  ``C_in / groups`` x prod(kernel), and Linear gives output elements x ``in_features``.
* **ConvTranspose{1,2,3}d**: input elements x ``C_out / groups`` x prod(kernel).
  thop applies the Conv formula to transposed convs, which overcounts a strided one by
  the product of its strides. Each input element is scattered through the kernel into
  ``C_out / groups`` channels. Outputs later cropped by ``padding`` are still counted.
* **Bias**: not counted. Neither thop's rules nor ours count it: adding a bias is an
  add, not a multiply-accumulate.
* **BatchNorm** (and its subclasses, e.g. SyncBatchNorm): 0. At inference, BatchNorm
  folds into the preceding conv or linear layer.
* **InstanceNorm, LayerNorm and GroupNorm**: thop's ``count_normalization`` formula, 2
  per input element, or 4 when affine. These norms use statistics of the input itself,
  so they cannot be folded. thop has no rule for GroupNorm, so we apply the same one.
* **Activations**: 0. That covers ReLU, LeakyReLU, PReLU, Softmax and the modules thop
  does not know, such as Tanh, Sigmoid and GELU (thop counts PReLU and Softmax).
* **Pooling and Upsample**: thop's formulas. Max pooling 0, average pooling 1 per output
  element, adaptive average pooling (input / output size + 1) per output element, and
  upsampling 1, 5, 11 or 259 per output element for the modes nearest, linear, bilinear
  and bicubic (any other mode 0).
* **Functional operations**: 0. thop sees only module calls, so residual ``x + h``
  adds, ``torch.cat``, ``F.interpolate`` and ``torch.bmm`` inside ``forward`` are not
  counted. An element-wise add is not a multiply-accumulate anyway.
* **Any other leaf module**: 0. That includes recurrent layers, which no generator here
  has (thop's recurrent rules are not public).

A module called several times in one forward is counted once per call.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from gansearch.compress.batches import as_inputs

__all__ = ["batch_size_of", "count_macs", "layer_macs"]

# A counting rule: the MACs of one call, for all samples, from the forward hook's
# arguments (the module, its positional inputs, its output).
_Rule = Callable[[nn.Module, tuple[Any, ...], Any], int]


def _zero(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """Count nothing (folded BatchNorm, activations, max pooling, padding, dropout)."""
    return 0


def _conv(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """Conv: output elements x ``C_in / groups`` x prod(kernel) (thop's ``count_convNd``)."""
    return y.numel() * (x[0].shape[1] // m.groups) * math.prod(m.weight.shape[2:])


def _conv_transpose(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """Count a transposed conv as input elements x (C_out / groups) x prod(kernel).

    The weight has shape ``(C_in, C_out / groups, *kernel)``, so the MACs per input
    element are the product of ``weight.shape[1:]``.
    """
    return x[0].numel() * math.prod(m.weight.shape[1:])


def _linear(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """Linear: output elements x ``in_features`` (thop's ``count_linear``)."""
    return m.in_features * y.numel()


def _normalization(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """2 per input element, 4 when affine (thop's ``count_normalization``)."""
    affine = m.elementwise_affine if isinstance(m, nn.LayerNorm) else m.affine
    return 2 * x[0].numel() * (2 if affine else 1)


def _avgpool(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """One op per output element (thop's ``count_avgpool``)."""
    return y.numel()


def _adaptive_avgpool(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """(kernel adds + 1 division) per output element (thop's ``count_adap_avgpool``).

    The kernel is the float ratio of input to output spatial sizes, as thop computes it,
    and the total is truncated to an int as thop does.
    """
    kernel = math.prod(i / o for i, o in zip(x[0].shape[2:], y.shape[2:], strict=True))
    return int((kernel + 1) * y.numel())


# thop's ops per output element of an upsampling, by mode; any other mode counts 0.
_UPSAMPLE_OPS = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 224 + 35}


def _upsample(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """Ops per output element by interpolation mode (thop's ``count_upsample``)."""
    return y.numel() * _UPSAMPLE_OPS.get(m.mode, 0)


def _thop() -> Any:
    """Import thop, silencing its import-time distutils DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import thop
    return thop


def _rule_table() -> dict[type, _Rule]:
    """Map module classes to counting rules (the policy in this module's docstring).

    thop's own rule table (``register_hooks`` in its ``profile`` module) is not public
    API, so every rule is written here (thop 0.1.1's formulas where the policy keeps
    them) and handed to ``thop.profile`` as ``custom_ops``, its public way to add rules.
    """
    zero = (
        (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
        + (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Softmax, nn.Dropout)
        + (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.ZeroPad2d, nn.PixelShuffle)
        + (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
    )
    rules: list[tuple[tuple[type, ...], _Rule]] = [
        (zero, _zero),
        ((nn.Conv1d, nn.Conv2d, nn.Conv3d), _conv),
        ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _conv_transpose),
        ((nn.Linear,), _linear),
        (
            (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
            + (nn.LayerNorm, nn.GroupNorm),
            _normalization,
        ),
        ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), _avgpool),
        ((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), _adaptive_avgpool),
        ((nn.Upsample,), _upsample),
    ]
    return {cls: rule for classes, rule in rules for cls in classes}


def _protocol_rule(m: nn.Module, x: tuple[Any, ...], y: Any) -> int:
    """Count a module through its own ``count_macs(x, y)`` method."""
    macs = m.count_macs(x, y)
    if isinstance(macs, bool) or not isinstance(macs, int) or macs < 0:
        raise ValueError(
            f"`{type(m).__name__}.count_macs` must return a non-negative int, but got {macs!r}."
        )
    return macs


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


def batch_size_of(example_input: Tensor | tuple[Tensor, ...]) -> int:
    """The batch size of ``example_input``, which per-sample counts are divided by.

    Raises:
        TypeError: If ``example_input`` is not a tensor or a tuple of tensors.
        ValueError: If it has no (common) batch dimension of size >= 1.
    """
    return int(as_inputs(example_input)[0].shape[0])


def _layer_macs_of_copy(
    model: nn.Module, example_input: Tensor | tuple[Tensor, ...]
) -> dict[str, int]:
    """Run thop on ``model`` (already a private copy) and return per-unit MACs per sample."""
    thop = _thop()
    batch = batch_size_of(example_input)
    table = _rule_table()
    units = list(_counting_units(model, table))
    rules = {module: rule for _, module, rule in units if rule is not None}
    totals: dict[nn.Module, int] = {module: 0 for module in rules}

    def record(m: nn.Module, x: tuple[Any, ...], y: Any) -> None:
        # Types are shared between units and modules inside a protocol module's
        # subtree; only units are counted.
        rule = rules.get(m)
        if rule is None:
            return
        totals[m] += rule(m, x, y)

    custom_ops = {type(module): record for module in rules}
    model.eval()
    with torch.no_grad():
        # thop's own totals are not used: its aggregation descends into nn.Sequential
        # even when the Sequential has a rule, which would double-count a protocol
        # module that subclasses Sequential.
        thop.profile(model, inputs=as_inputs(example_input), custom_ops=custom_ops, verbose=False)
    return {
        name: round(totals[module] / batch) if module in totals else 0 for name, module, _ in units
    }


def layer_macs(model: nn.Module, example_input: Tensor | tuple[Tensor, ...]) -> dict[str, int]:
    """Count the MACs per sample of each counting unit, using thop.

    A counting unit is a module with a counting rule (its subtree is not descended into)
    or a leaf without one (0 MACs). The policy is in this module's docstring. The
    caller's model is not modified: counting runs on a deep copy.

    Args:
        model: The network to count.
        example_input: A batch fed as ``model(*example_input)`` (a tensor or a tuple of
            tensors); the counts are divided by its first dimension.

    Returns:
        A mapping from qualified module name (``""`` for the root) to MACs per sample,
        in module order. The values sum to :func:`count_macs`.

    Raises:
        TypeError: If ``example_input`` is not a tensor or a tuple of tensors.
        ValueError: If ``example_input`` has no batch dimension, or a ``count_macs``
            method returns something other than a non-negative int.
    """
    batch_size_of(example_input)
    return _layer_macs_of_copy(copy.deepcopy(model), example_input)


def count_macs(model: nn.Module, example_input: Tensor | tuple[Tensor, ...]) -> int:
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
