"""Training a once-for-all supernet, optionally quantisation-aware over widths and bits.

The sandwich-rule distillation of :mod:`gansearch.compress.supernet` (GAN Compression,
Li et al., CVPR 2020; Once-for-All, Cai et al., ICLR 2020; Yu & Huang, ICCV 2019): each
step accumulates the gradients of the largest, the smallest and one random width vector,
each distilled from the frozen teacher, then takes one optimiser step.

**Quantisation-aware sandwich** (``recipe.bits``): a search picks widths *and* per-layer
weight bits, so the smallest and the random sub-generator of every step run with their
weights fake-quantised, each layer at a bit width drawn from ``recipe.bits`` (32 = float),
as APQ trains one network over widths and precisions jointly (Wang et al., "APQ: Joint
Search for Network Architecture, Pruning and Quantization Policy", CVPR 2020) and as
quantisation-aware once-for-all training does (Shen et al., "Once Quantization-Aware
Training", 2021). The largest sub-generator stays float32, anchoring the shared weights to
the teacher. The quantiser is the artifact's own per-output-channel affine grid
(:func:`~gansearch.compress.quantizers.fit_affine`, refit to the current weights each
step with a coarser clipping search, on the input channels the sub-generator keeps, as
its extracted form is fit) with the straight-through estimator (Bengio et al. 2013); the
quantised weights are substituted with :func:`torch.func.functional_call`, so the module
hooks that mask channels and tap features still fire.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from gansearch.compress.batches import InputSampler, draw, zeros_like
from gansearch.compress.distill import (
    Progress,
    check_finite,
    check_parameters,
    check_terms,
    data_seed,
    real_batches,
)
from gansearch.compress.distill_loss import ADAM_BETAS, DistillationLoss, FeatureTap
from gansearch.compress.encodings import from_rows, to_rows
from gansearch.compress.fakequant import default_channel_axis, straight_through
from gansearch.compress.importance import channel_order
from gansearch.compress.masking import ChannelMasker
from gansearch.compress.quantizers import affine_codes, affine_decode, fit_affine
from gansearch.compress.recipes import SupernetRecipe
from gansearch.compress.structure import GeneratorStructure
from gansearch.compress.supernet import (
    SANDWICH,
    Supernet,
    SupernetError,
    WidthSampler,
    check_masking_is_pruning,
)

FLOAT_BITS = 32
QAT_CANDIDATES = 8
"""Clipping ranges :func:`fit_affine` tries per refit while training (25 at export)."""


def fake_quantize(
    weight: Tensor, bits: int, channel_axis: int, kept: tuple[int, Tensor] | None = None
) -> Tensor:
    """``weight`` on a per-output-channel affine ``bits``-bit grid, straight-through.

    ``kept = (axis, index)``: fit the grid on those input channels only, the ones the
    sub-generator keeps (an extracted sub-generator's weight holds nothing else).
    """
    with torch.no_grad():
        fitted = weight.detach().float()
        if kept is not None:
            fitted = fitted.index_select(kept[0], kept[1])
        scale, zero = fit_affine(
            to_rows(fitted, channel_axis), bits, num_candidates=QAT_CANDIDATES, em_steps=0
        )
        rows = to_rows(weight.detach().float(), channel_axis)
        decoded = affine_decode(affine_codes(rows, scale, zero, bits), scale, zero)
        quantized = from_rows(decoded, tuple(weight.shape), channel_axis).to(weight.dtype)
    return straight_through(weight, quantized)


def kept_inputs(
    structure: GeneratorStructure, masks: Mapping[str, tuple[bool, ...]]
) -> dict[str, Tensor]:
    """Per layer, the input channels a sub-generator with keep-``masks`` still has.

    Layers whose inputs no group prunes are left out (they keep every input), as are
    members of grouped convolutions (their grid is fit on whole rows).
    """
    kept: dict[str, Tensor] = {}
    sizes = {layer.name: layer.in_channels for layer in structure.layers}
    for group in structure.groups:
        mask = masks[group.name]
        for member in group.members:
            if member.dim != "in" or member.blocks != 1 or member.layer not in sizes:
                continue
            keep = kept.setdefault(member.layer, torch.ones(sizes[member.layer], dtype=torch.bool))
            for channel, on in enumerate(mask):
                if not on:
                    start = member.offset + channel * member.unit
                    keep[start : start + member.unit] = False
    return {name: keep.nonzero().flatten() for name, keep in kept.items()}


class BitSampler:
    """Draws one weight bit width per layer from ``bits``, from its own seeded RNG."""

    def __init__(
        self, model: nn.Module, structure: GeneratorStructure, bits: tuple[int, ...], seed: int
    ) -> None:
        self.bits = tuple(bits)
        self.structure = structure
        self.layers = {layer.name: model.get_submodule(layer.name) for layer in structure.layers}
        self.grouped = {layer.name for layer in structure.layers if layer.groups != 1}
        self.rng = random.Random(seed + 3_000_017)

    def draw(self) -> dict[str, int]:
        return {name: self.rng.choice(self.bits) for name in self.layers}

    def weights(
        self, choice: Mapping[str, int], masks: Mapping[str, tuple[bool, ...]]
    ) -> dict[str, Tensor]:
        """The fake-quantised ``<layer>.weight`` tensors of ``choice`` for the sub-generator
        with keep-``masks`` (float layers left out)."""
        kept = kept_inputs(self.structure, masks)
        weights = {}
        for name, module in self.layers.items():
            if choice[name] >= FLOAT_BITS:
                continue
            axis = default_channel_axis(module)
            inputs = None
            if name in kept and name not in self.grouped:
                inputs = (0 if axis == 1 else 1, kept[name])
            weights[f"{name}.weight"] = fake_quantize(module.weight, choice[name], axis, inputs)
        return weights


def train_supernet(
    teacher: nn.Module,
    discriminator: nn.Module | None,
    data: Tensor | None,
    structure: GeneratorStructure,
    recipe: SupernetRecipe,
    progress: Progress | None = None,
    *,
    inputs: InputSampler,
) -> Supernet:
    """Distil ``teacher`` into a once-for-all supernet initialised from it.

    Channels are ordered by importance first; each step applies the sandwich rule
    (largest, smallest, one random width vector; gradients accumulated, one Adam step)
    with the distillation loss of ``recipe.losses`` against the frozen teacher; with
    ``recipe.bits`` the smallest and random ones are quantisation-aware (module docstring).
    The teacher and discriminator are not modified.

    Args:
        teacher: The teacher generator.
        discriminator: Its discriminator (only needed by discriminator loss terms).
        data: Real images (only needed when ``losses.discriminator_lr > 0``).
        structure: ``describe(teacher, example_input)``.
        recipe: Steps, ratios, bits, learning rate, batch size, seed and loss weights.
        progress: Called as ``progress(step, steps, losses)`` after each step.
        inputs: Draws the generator's input batches (from the training split).

    Returns:
        The trained :class:`Supernet` (model in eval mode, BN statistics shared).

    Raises:
        DistillationDiverged: at a non-finite loss, output or parameter.
        SupernetError: when zeroing channels is not equivalent to pruning them here.
    """
    model = copy.deepcopy(teacher)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    example = zeros_like(draw(inputs, 1, seed=0))
    order = channel_order(teacher, structure, example)
    supernet = Supernet(model, structure, order, tuple(recipe.ratios), inputs)
    check_masking_is_pruning(supernet, supernet.smallest())
    loss = DistillationLoss(
        model, teacher, discriminator, recipe.losses, supernet.example_input(), seed=recipe.seed
    )
    batches = None
    if loss.adversary is not None:
        if data is None:
            raise SupernetError(
                "`discriminator_lr > 0` trains the discriminator on real data, but no data was "
                "given; set `supernet.losses.discriminator_lr: 0`"
            )
        batches = real_batches(
            data, recipe.batch_size, torch.Generator().manual_seed(data_seed(recipe.seed))
        )
    sampler = WidthSampler(supernet, recipe.seed)
    bit_sampler = BitSampler(model, structure, recipe.bits, recipe.seed) if recipe.bits else None
    input_rng = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.Adam(
        [*model.parameters(), *loss.parameters()], lr=recipe.lr, betas=ADAM_BETAS
    )
    model.train()
    with ChannelMasker(model, structure) as masker, FeatureTap(model, loss.feature_layers) as tap:
        for step in range(1, recipe.steps + 1):
            batch = inputs.sample(recipe.batch_size, input_rng)
            targets = loss.targets(batch)
            optimizer.zero_grad(set_to_none=True)
            record: dict[str, float] = {}
            for name, widths in zip(SANDWICH, sampler.sandwich(), strict=True):
                masks = supernet.keep_masks(widths)
                masker.set_masks(masks)
                if bit_sampler is not None and name != "largest":
                    weights = bit_sampler.weights(bit_sampler.draw(), masks)
                    images = functional_call(model, weights, batch, strict=False)
                else:
                    images = model(*batch)
                check_finite(images, f"the {name} sub-generator's output", step, recipe.lr)
                terms = loss.terms(images, tap.outputs, targets)
                total = loss.total(terms)
                check_terms(terms, total, step, recipe.lr)
                total.backward()
                record[name] = total.item()
            optimizer.step()
            check_parameters([model, loss.mappings], step, recipe.lr)
            if batches is not None:
                d_loss = loss.discriminator_step(next(batches), images)
                check_finite(torch.tensor(d_loss), "the discriminator loss", step, recipe.lr)
                record["discriminator"] = d_loss
            if progress is not None:
                progress(step, recipe.steps, record)
    model.eval()
    return supernet
