"""Channel masking: run a network as if channels of its prunable groups were removed.

Once-for-all training (Cai et al., "Once-for-All", ICLR 2020) runs every sub-generator on
the one set of shared weights: a forward hook on each *output-side* member of a group
(its Conv/Linear and its norm layer) multiplies the output by a 0/1 channel mask. Zeroing
a channel after its norm layer is the same as removing it when the activations between
groups map 0 to 0 (:func:`gansearch.compress.supernet.check_masking_is_pruning` verifies
this on a given generator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gansearch.compress.structure import OUT, GeneratorStructure, StructureError


def _output_size(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    size = getattr(module, "num_features", None)
    if size is None:
        raise StructureError(
            f"cannot mask the output channels of a {type(module).__name__}; supported are "
            "Conv, ConvTranspose, Linear and norm layers"
        )
    return int(size)


class ChannelMasker:
    """Zeroes the channels outside the current keep-masks at every output-side group member.

    A context manager: hooks are attached on enter and removed on exit, so ``model`` never
    keeps them (and copies of it stay plain). Enter it *before* any
    :class:`~gansearch.compress.distill_loss.FeatureTap` so that the tap sees masked outputs.

    Args:
        model: The network to mask (in the architecture ``structure`` describes).
        structure: Its prunable groups.
    """

    def __init__(self, model: nn.Module, structure: GeneratorStructure) -> None:
        self.model = model
        self.members: dict[str, list[tuple[Any, ...]]] = {}
        for group in structure.groups:
            for member in group.members:
                if member.dim == OUT:
                    self.members.setdefault(member.layer, []).append((group, member))
        self.masks: dict[str, Tensor] = {}
        self._handles: list[Any] = []

    def set_masks(self, keep: Mapping[str, Sequence[bool]]) -> None:
        """Zero the channels each group's keep-mask drops (groups not listed keep all)."""
        masks = {}
        for layer, entries in self.members.items():
            mask = None
            for group, member in entries:
                mask_of_group = keep.get(group.name, ())
                removed = [c for c, kept in enumerate(mask_of_group) if not kept]
                if not removed:
                    continue
                if mask is None:
                    mask = torch.ones(_output_size(self.model.get_submodule(layer)))
                for c in removed:
                    mask[member.channels(c, group.num_channels)] = 0.0
            if mask is not None:
                masks[layer] = mask
        self.masks = masks

    def _hook(self, layer: str, linear: bool) -> Callable[..., Tensor | None]:
        def apply(_module: nn.Module, _args: Any, output: Tensor) -> Tensor | None:
            mask = self.masks.get(layer)
            if mask is None:
                return None
            if linear:
                return output * mask.to(output)
            shape = [1] * output.dim()
            shape[1] = -1
            return output * mask.to(output).view(shape)

        return apply

    def __enter__(self) -> ChannelMasker:
        for layer in self.members:
            module = self.model.get_submodule(layer)
            hook = self._hook(layer, isinstance(module, nn.Linear))
            self._handles.append(module.register_forward_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
