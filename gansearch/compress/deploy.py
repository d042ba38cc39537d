"""The deployment form of a generator: the float network a compressed candidate runs as.

:func:`deployment_copy` returns an eval-mode copy that computes the same function as the
simulated (fake-quantised) generator, with inference-only rewrites that remove work:

1. **Weights dequantised** (:func:`dequantized_copy`): every
   encoded weight becomes a plain, contiguous float parameter holding its decoded value.
2. **BatchNorm folded into the preceding convolution** (Ioffe and Szegedy, "Batch
   Normalization", ICML 2015, Sec. 3.2: in inference the normalisation is a fixed
   per-channel affine map). A ``BatchNorm2d`` that uses running statistics and whose
   input is *only* the output of a ``Conv2d`` / ``ConvTranspose2d`` (called once, output
   used by nothing else, no forward hooks) is folded into that convolution's weight and
   bias with ``scale = gamma / sqrt(running_var + eps)``: a ``Conv2d`` weight
   ``(out, in/groups, kh, kw)`` is scaled along dim 0, a ``ConvTranspose2d`` weight
   ``(in, out/groups, kh, kw)`` along its output axis (dim 1, per group); the bias becomes
   ``(bias - running_mean) * scale + beta``. The BatchNorm is replaced by ``nn.Identity``.
   For a low-rank factorisation ``Sequential(first, 1x1 conv)`` the BatchNorm after it
   folds into the 1x1 second factor (the factorisation's last op).
3. **Low-rank factors merged back** only where that is exact and cheaper: a pair
   ``first`` + 1x1 ``Conv2d`` (or ``Linear`` + ``Linear``) is one linear map, so when the
   merged layer needs fewer MACs than the two factors (``in*out*k^2 < r*(in*k^2 + out)``,
   counting the 1x1 at the first factor's input resolution for a transposed first factor,
   a lower bound of its cost) the pair becomes a single layer of the original shape.
   That happens only at ranks close to full rank; low ranks stay factorised.

What is **not** folded (left in place, still correct): InstanceNorm / GroupNorm /
LayerNorm (they normalise with statistics of the input itself); a BatchNorm without
running statistics (``track_running_stats=False``, batch statistics at eval too); a
BatchNorm whose input is not a convolution's output alone - e.g. after a residual add,
a concatenation, an activation, or a convolution whose output is also used elsewhere;
a convolution called more than once (shared weights) or carrying forward hooks.

Activation quantisers (:class:`~gansearch.compress.actquant.ActivationQuantizer`, an
``input_quant`` submodule run by a forward pre-hook on a layer's input) are kept, with
their calibrated ranges. Their rounding is preserved exactly by default: a fold changes
the values it produces by float rounding (a few ulps), and a value that sits on a
rounding boundary of a later quantiser would then land one quantisation step away
(measured: ~1e-3 output error on a DCGAN with 8-bit activations). So by default nothing
is folded or merged *upstream of an active quantiser* (a BatchNorm whose output reaches,
through any path of the traced graph, a layer with an input quantiser stays); the
quantisers see bit-identical inputs. ``fold_before_quantizers=True`` folds those too -
the network then costs what a deployment that folds everything would, and agrees with
the simulated one except for occasional one-step rounding flips.

How pairs are found: ``torch.fx.symbolic_trace`` of the network (only to read its
graph; the returned module is the rewritten copy, not an fx ``GraphModule``). When a
custom ``forward`` cannot be traced symbolically (data-dependent control flow), the
fallback is the safe rule "a convolution immediately followed by a BatchNorm inside an
``nn.Sequential``" (a Sequential feeds each stage's output only to the next stage); that
fallback cannot see what feeds a quantiser, so with active quantisers it folds and merges
nothing unless ``fold_before_quantizers=True``.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from gansearch.compress.actquant import ACTIVATION_QUANT_NAME, ActivationQuantizer

__all__ = ["DeploymentReport", "deployment_copy", "dequantized_copy"]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


@dataclass
class DeploymentReport:
    """What :func:`deployment_copy` rewrote (qualified names in the copy).

    Attributes:
        folded: ``(batchnorm, convolution)`` pairs folded (the BatchNorm became Identity).
        merged: low-rank factorisations merged back into one layer.
        kept_for_quantizers: BatchNorms / factorisations left alone because their output
            reaches an activation quantiser (see ``fold_before_quantizers``).
        tracer: ``"fx"`` or ``"sequential"`` (the fallback rule) - how pairs were found.
    """

    folded: list[tuple[str, str]] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    kept_for_quantizers: list[str] = field(default_factory=list)
    tracer: str = "fx"


@dataclass(frozen=True)
class _Graph:
    """What the rewrites need to know about the network's data flow."""

    pairs: list[tuple[str, str]]  # (conv, batchnorm) candidates
    feeds_quantizer: frozenset[str]  # modules whose output reaches an active quantiser
    all_feed_quantizer: bool  # no graph: treat every module as feeding one (if any exists)
    tracer: str

    def reaches_quantizer(self, name: str) -> bool:
        return self.all_feed_quantizer or name in self.feeds_quantizer


def deployment_copy(
    module: nn.Module,
    *,
    fold_before_quantizers: bool = False,
    report: DeploymentReport | None = None,
) -> nn.Module:
    """The deployment form of a generator: dequantised, BatchNorm folded, eval mode.

    Args:
        module: any generator ``nn.Module`` (for a compressed candidate, its ``module``,
            or call :meth:`~gansearch.compress.apply.CompressedGenerator.deployment_module`).
            Left unchanged.
        fold_before_quantizers: also fold / merge where the result feeds an activation
            quantiser (faster, but its rounding may flip by one step; see module docs).
        report: if given, filled with what was folded and merged.

    Returns:
        A new eval-mode module computing the simulated generator's outputs (up to float
        rounding; activation quantisers see identical inputs unless
        ``fold_before_quantizers``) with plain contiguous float weights.
    """
    report = report if report is not None else DeploymentReport()
    model = dequantized_copy(module).eval()
    graph = _analyse(model, fold_before_quantizers)
    report.tracer = graph.tracer
    with torch.no_grad():
        _fold_batchnorms(model, graph, report)
        _merge_low_rank_pairs(model, graph, report)
        for parameter in model.parameters():
            parameter.data = parameter.data.contiguous()
    return model


def dequantized_copy(module: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``module`` with every parametrised weight baked in.

    The copy's weights are plain parameters holding the decoded (dequantised) values, so
    it runs as an ordinary float network; ``module`` is left unchanged. Activation
    quantisers are kept.
    """
    baked = copy.deepcopy(module).eval()
    for submodule in baked.modules():
        if not parametrize.is_parametrized(submodule):
            continue
        # torch's deepcopy shares the injected ``Parametrized<Class>`` between the original
        # and the copy, and remove_parametrizations deletes the weight property from that
        # class, which would break the original. Give the copy a private class first.
        shared = type(submodule)
        submodule.__class__ = type(shared.__name__, shared.__bases__, dict(shared.__dict__))
        for name in list(submodule.parametrizations.keys()):
            parametrize.remove_parametrizations(submodule, name, leave_parametrized=True)
            baked_tensor = getattr(submodule, name)
            # Decoded weights can be strided views (channel axis moved back); kernels want
            # the standard layout, as the teacher has.
            baked_tensor.data = baked_tensor.data.contiguous()
        if hasattr(submodule, "weight_bits"):
            submodule.weight_bits = 32
    return baked


# ---------------------------------------------------------------------------------------
# BatchNorm folding
# ---------------------------------------------------------------------------------------


def _fold_batchnorms(model: nn.Module, graph: _Graph, report: DeploymentReport) -> None:
    """Fold every foldable eval-mode BatchNorm into its convolution, in place."""
    shared = _shared_parameter_owners(model)
    for conv_name, norm_name in graph.pairs:
        conv = model.get_submodule(conv_name)
        norm = model.get_submodule(norm_name)
        if conv_name in shared or not _foldable(conv, norm):
            continue
        if graph.reaches_quantizer(norm_name):
            report.kept_for_quantizers.append(norm_name)
            continue
        _fold_into(conv, norm)
        _replace(model, norm_name, nn.Identity())
        report.folded.append((norm_name, conv_name))


def _analyse(model: nn.Module, fold_before_quantizers: bool) -> _Graph:
    """Trace ``model`` with torch.fx (graph only), or fall back to the Sequential rule."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - any untraceable forward falls back to the safe rule
        quantized = any(isinstance(m, ActivationQuantizer) and m.bits < 32 for m in model.modules())
        return _Graph(
            pairs=_pairs_from_sequentials(model),
            feeds_quantizer=frozenset(),
            all_feed_quantizer=quantized and not fold_before_quantizers,
            tracer="sequential",
        )
    feeds: frozenset[str] = frozenset()
    if not fold_before_quantizers:
        feeds = _modules_feeding_quantizers(model, graph)
    return _Graph(_pairs_from_fx(model, graph), feeds, False, "fx")


def _modules_feeding_quantizers(model: nn.Module, graph: torch.fx.Graph) -> frozenset[str]:
    """Names of called modules with an active input quantiser somewhere downstream."""
    feeding: set[torch.fx.Node] = set()
    for node in reversed(graph.nodes):  # users come after their inputs
        if any(user in feeding or _quantizes_input(model, user) for user in node.users):
            feeding.add(node)
    return frozenset(str(n.target) for n in feeding if n.op == "call_module")


def _quantizes_input(model: nn.Module, node: torch.fx.Node) -> bool:
    if node.op != "call_module":
        return False
    quantizer = getattr(model.get_submodule(str(node.target)), ACTIVATION_QUANT_NAME, None)
    return isinstance(quantizer, ActivationQuantizer) and quantizer.bits < 32


def _pairs_from_fx(model: nn.Module, graph: torch.fx.Graph) -> list[tuple[str, str]]:
    """``(conv, norm)`` names where the norm's only input is the conv's only use."""
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        if not isinstance(model.get_submodule(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        if len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and calls[source.target] == 1
            and len(source.users) == 1
            and isinstance(model.get_submodule(source.target), _CONVS)
        ):
            pairs.append((str(source.target), str(node.target)))
    return pairs


def _pairs_from_sequentials(model: nn.Module) -> list[tuple[str, str]]:
    """Adjacent ``(conv, norm)`` stages of every ``nn.Sequential`` (a low-rank factor
    Sequential counts as its last stage)."""
    pairs = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        prefix = f"{name}." if name else ""
        children = list(module.named_children())
        for (first_name, first), (second_name, second) in itertools.pairwise(children):
            if not isinstance(second, nn.modules.batchnorm._BatchNorm):
                continue
            conv_name = f"{prefix}{first_name}"
            while isinstance(first, nn.Sequential) and len(first) > 0:
                last = str(len(first) - 1)
                first, conv_name = first[-1], f"{conv_name}.{last}"
            if isinstance(first, _CONVS):
                pairs.append((conv_name, f"{prefix}{second_name}"))
    return pairs


def _shared_parameter_owners(model: nn.Module) -> set[str]:
    """Names of modules whose weight or bias tensor another module also holds."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for tensor in module.parameters(recurse=False):
            owners.setdefault(id(tensor), []).append(name)
    return {name for names in owners.values() if len(names) > 1 for name in names}


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (
        isinstance(conv, _CONVS)
        and isinstance(norm, nn.modules.batchnorm._BatchNorm)
        and not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
        and norm.num_features == conv.out_channels
        and not conv._forward_hooks
        and not norm._forward_hooks
        and not norm._forward_pre_hooks
        and isinstance(conv.weight, nn.Parameter)
    )


def _fold_into(conv: nn.Conv2d | nn.ConvTranspose2d, norm: nn.modules.batchnorm._BatchNorm) -> None:
    """``conv`` followed by the eval-mode ``norm`` becomes one convolution (in place).

    Not ``torch.nn.utils.fusion.fuse_conv_bn_weights``: with ``transpose=True`` it fails on
    a grouped ConvTranspose2d (it scales dim 1, which holds ``out / groups``), and it works
    in the weight's dtype, whereas float64 here keeps a downstream activation quantiser's
    rounding unchanged.
    """
    dtype = conv.weight.dtype
    mean = norm.running_mean.double()
    scale = (norm.running_var.double() + norm.eps).rsqrt()
    shift = -mean * scale
    if norm.affine:
        shift = shift * norm.weight.double() + norm.bias.double()
        scale = scale * norm.weight.double()
    weight = conv.weight.double()
    if isinstance(conv, nn.ConvTranspose2d):  # (in, out/groups, kh, kw): scale along dim 1
        groups = conv.groups
        grouped = weight.reshape(groups, weight.shape[0] // groups, *weight.shape[1:])
        per_group = scale.reshape(groups, 1, -1, 1, 1)
        weight = (grouped * per_group).reshape(weight.shape)
    else:  # (out, in/groups, kh, kw): scale along dim 0
        weight = weight * scale.reshape(-1, 1, 1, 1)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    conv.weight = nn.Parameter(weight.to(dtype).contiguous(), requires_grad=False)
    conv.bias = nn.Parameter((bias * scale + shift).to(dtype), requires_grad=False)


# ---------------------------------------------------------------------------------------
# Low-rank pairs
# ---------------------------------------------------------------------------------------


def _merge_low_rank_pairs(model: nn.Module, graph: _Graph, report: DeploymentReport) -> None:
    """Merge each low-rank ``Sequential(first, second)`` whose merged layer is cheaper.

    Exact (one linear map): ``second`` is a 1x1 stride-1 ``Conv2d`` after a ``Conv2d`` /
    ``ConvTranspose2d`` (or a ``Linear`` after a ``Linear``), both ungrouped, ``second``
    without hooks (an input quantiser on the first factor is kept, on the merged layer).
    """
    shared = _shared_parameter_owners(model)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Sequential) and len(module) == 2
    ]
    for name, pair in candidates:
        if not name or any(n in shared for n in (f"{name}.0", f"{name}.1")):
            continue
        if _merged(pair[0], pair[1], dry_run=True) is None:
            continue
        if graph.reaches_quantizer(f"{name}.1"):
            report.kept_for_quantizers.append(name)
            continue
        _replace(model, name, _merged(pair[0], pair[1]))
        report.merged.append(name)


def _merged(first: nn.Module, second: nn.Module, *, dry_run: bool = False) -> nn.Module | None:
    """``first`` rewritten as the composition (or None when not exact or not cheaper)."""
    if second._forward_hooks or second._forward_pre_hooks or first._forward_hooks:
        return None
    if isinstance(first, nn.Linear) and isinstance(second, nn.Linear):
        rank, inputs, outputs = first.out_features, first.in_features, second.out_features
        if inputs * outputs >= rank * (inputs + outputs):
            return None
        if dry_run:
            return first
        weight = second.weight.double() @ first.weight.double()
        first.out_features = outputs
    elif isinstance(first, _CONVS) and _is_pointwise(second) and first.groups == 1:
        rank, inputs, outputs = first.out_channels, first.in_channels, second.out_channels
        taps = first.kernel_size[0] * first.kernel_size[1]
        if inputs * outputs * taps >= rank * (inputs * taps + outputs):
            return None
        if dry_run:
            return first
        mix = second.weight.double()[:, :, 0, 0]  # (out, r)
        if isinstance(first, nn.ConvTranspose2d):  # (in, r, kh, kw) -> (in, out, kh, kw)
            weight = torch.einsum("irhw,or->iohw", first.weight.double(), mix)
        else:  # (r, in, kh, kw) -> (out, in, kh, kw)
            weight = torch.einsum("or,rihw->oihw", mix, first.weight.double())
        first.out_channels = outputs
    else:
        return None
    bias = None
    if second.bias is not None or first.bias is not None:
        bias = second.bias.double() if second.bias is not None else 0.0
        if first.bias is not None:
            bias = bias + second.weight.double().reshape(outputs, rank) @ first.bias.double()
    dtype = first.weight.dtype
    first.weight = nn.Parameter(weight.to(dtype).contiguous(), requires_grad=False)
    first.bias = None if bias is None else nn.Parameter(bias.to(dtype), requires_grad=False)
    return first


def _is_pointwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.padding == (0, 0)
        and module.dilation == (1, 1)
        and module.groups == 1
    )


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
