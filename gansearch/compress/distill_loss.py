"""The knowledge-distillation loss between a student and a teacher (survey Eq. 1-8).

Every term of the survey's knowledge-distillation section can be switched on and
weighted (:class:`~gansearch.compress.recipes.DistillLosses`, translated from the study
YAML by the configuration layer; weight 0 = off, the term is not computed):

``pixel`` (Eq. 2)
    ``loss(G_s(z), G_t(z))``, L1 (default) or L2 by ``pixel_norm``
    (Aguinaldo et al., "Compressing GANs using Knowledge Distillation", 2019).
``adversarial`` (Eq. 1, combined as in Eq. 3 / Eq. 7)
    The generator side of Eq. 1 through the teacher's discriminator, in its
    non-saturating form ``-log D(G_s(z))`` (Goodfellow et al., NeurIPS 2014), which is
    also how the digits teacher was trained. With ``discriminator_lr > 0`` a *copy* of
    the discriminator is trained alongside (real data vs. student images, Eq. 1's max
    side) so that the adversarial signal keeps up with the student; with 0 the copy stays
    fixed. The caller's discriminator is never modified.
``class_logits`` (Eq. 4, combined as in Eq. 5)
    ``MSE(D_t(G_s(z)), D_t(G_t(z)))`` on the logits of the *fixed* teacher
    discriminator (Yu & Pool, "Self-Supervised GAN Compression", 2020). The survey leaves
    ``loss`` open; the squared error of logits is used.
``feature`` (Eq. 6, combined as in Eq. 7)
    ``sum_t MSE(f_t(S_t(z)), T_t(z))`` over matched intermediate layers, where ``f_t`` is
    a learned 1x1 convolution from the student's channels to the teacher's (Li et al.,
    "GAN Compression: Efficient Architectures for Interactive Conditional GANs",
    CVPR 2020). The survey writes Eq. 6 with ``f_t`` applied to the teacher; mapping
    the *student* up to the teacher's width, as GAN Compression does, is what makes a
    pruned student comparable, and the mapping is dropped after training. Layers are
    matched by qualified name (``feature_layers``; default: every norm layer present in
    both, which in a DCGAN-style generator is the end of each prunable channel group).
    ``f_t`` starts as the identity when the channel counts agree, else from a seeded
    default initialisation. The survey's Eq. 6 norm is taken as the mean squared error
    per element (as in GAN Compression's code), so the weight does not depend on size.
``perceptual`` (Eq. 8)
    ``sum_t 1/N_t ||D_t(x) - D_t(G_s(z))||_1`` on intermediate features of the fixed
    teacher discriminator, with ``x = G_t(z)`` (Jin et al., "Teachers Do More Than
    Teach: Compressing Image-to-Image Models", CVPR 2021).

Discriminator features come from its ``features(x) -> (activations, logits)`` method when
it has one (as :class:`~gansearch.zoo.models.DCGANDiscriminator`); any other
discriminator works too: its activations are then the outputs of every Conv/Linear layer
but the last, read with forward hooks.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gansearch.compress.batches import Inputs, as_inputs
from gansearch.compress.dependency import COMPRESSIBLE_TYPES, NORM_TYPES
from gansearch.compress.recipes import DistillLosses
from gansearch.errors import GansearchError

DISCRIMINATOR_TERMS = ("adversarial", "class_logits", "perceptual")
ADAM_BETAS = (0.5, 0.999)  # Radford et al. (DCGAN, ICLR 2016), as the digits teacher


class DistillationError(GansearchError):
    """Distillation cannot be set up as configured (missing discriminator, unknown layer)."""


# ---------------------------------------------------------------------------------------
# Layers and features
# ---------------------------------------------------------------------------------------


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule ``name`` of ``model`` (also inside a ``CompressedGenerator`` wrapper).

    Raises:
        DistillationError: naming the layer when it does not exist.
    """
    for candidate in (name, f"module.{name}"):
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    raise DistillationError(
        f"layer {name!r} is not in the {type(model).__name__}; fix `losses.feature_layers` "
        "(qualified module names, e.g. net.1)"
    )


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        find_module(model, name)
    except DistillationError:
        return False
    return True


def default_feature_layers(student: nn.Module, teacher: nn.Module) -> tuple[str, ...]:
    """Layers matched by Eq. 6 when none are configured.

    Every BatchNorm/InstanceNorm of the teacher whose qualified name also exists in the
    student (the end of each Conv-Norm block, i.e. of each prunable channel group in a
    DCGAN-style generator). Without norm layers: every Conv/Linear layer of the teacher but
    the last, shared by name.
    """
    named = list(teacher.named_modules())
    norms = [n for n, m in named if isinstance(m, NORM_TYPES) and _has_module(student, n)]
    if norms:
        return tuple(norms)
    layers = [n for n, m in named if isinstance(m, COMPRESSIBLE_TYPES)][:-1]
    return tuple(n for n in layers if _has_module(student, n))


class FeatureTap:
    """Records the outputs of named submodules during forward passes (forward hooks).

    Use as a context manager; ``outputs[name]`` holds the latest output of each layer.
    Hooks registered earlier on the same module (e.g. channel masks) run first, so the
    tap sees their result.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.modules = {name: find_module(model, name) for name in names}
        self.outputs: dict[str, Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Callable[..., None]:
        def record(_module: nn.Module, _args: Any, output: Any) -> None:
            self.outputs[name] = output

        return record

    def __enter__(self) -> FeatureTap:
        self._handles = [
            module.register_forward_hook(self._hook(name)) for name, module in self.modules.items()
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def discriminator_features(discriminator: nn.Module, images: Tensor) -> tuple[list[Tensor], Tensor]:
    """Intermediate activations and flattened logits of a discriminator.

    Uses ``discriminator.features(images) -> (activations, logits)`` when the method
    exists; otherwise the outputs of every Conv/Linear layer but the last (forward hooks)
    and ``discriminator(images)``.
    """
    method = getattr(discriminator, "features", None)
    if inspect.ismethod(method):
        activations, logits = method(images)
        return list(activations), logits.flatten()
    layers = [n for n, m in discriminator.named_modules() if isinstance(m, COMPRESSIBLE_TYPES)][:-1]
    with FeatureTap(discriminator, layers) as tap:
        logits = discriminator(images)
    return [tap.outputs[name] for name in layers], logits.flatten()


def _feature_mapping(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    """Learned map from student to teacher channels (GAN Compression, Li et al. 2020)."""
    if len(student_shape) != len(teacher_shape) or student_shape[2:] != teacher_shape[2:]:
        raise DistillationError(
            f"feature shapes differ beyond the channel count: student {tuple(student_shape)} "
            f"vs teacher {tuple(teacher_shape)}; choose matching `losses.feature_layers`"
        )
    in_channels, out_channels = student_shape[1], teacher_shape[1]
    if len(student_shape) == 4:
        mapping: nn.Module = nn.Conv2d(in_channels, out_channels, kernel_size=1)
    elif len(student_shape) == 2:
        mapping = nn.Linear(in_channels, out_channels)
    else:
        raise DistillationError(
            f"feature distillation supports (N, C) and (N, C, H, W) activations, got "
            f"{tuple(student_shape)}; choose other `losses.feature_layers`"
        )
    if in_channels == out_channels:
        with torch.no_grad():
            mapping.weight.copy_(torch.eye(out_channels).view_as(mapping.weight))
            mapping.bias.zero_()
    return mapping


def _frozen_copy(module: nn.Module) -> nn.Module:
    frozen = copy.deepcopy(module).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


# ---------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TeacherTargets:
    """What the teacher side contributes for one input batch (no gradients)."""

    images: Tensor
    features: Mapping[str, Tensor]
    critic_features: tuple[Tensor, ...] = ()
    critic_logits: Tensor | None = None


class DistillationLoss:
    """The weighted sum of the survey's Eq. 1-8 terms between a student and a teacher.

    Holds frozen copies of the teacher and the discriminator, the learned feature
    mappings, and (with ``discriminator_lr > 0``) a trainable copy of the discriminator.
    Nothing passed in is modified.

    Args:
        student: The student (used only to find the matched layers' channel counts).
        teacher: The teacher generator.
        discriminator: The teacher's discriminator; needed by the adversarial, class and
            perceptual terms.
        losses: Which terms, with which weights.
        example_input: An input batch the generators accept (for shapes only).
        seed: Seed of the mappings' initialisation (under ``torch.random.fork_rng``).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        discriminator: nn.Module | None,
        losses: DistillLosses,
        example_input: Inputs | Tensor,
        *,
        seed: int,
    ) -> None:
        self.losses = losses
        self.weights = losses.active()
        self.teacher = _frozen_copy(teacher)
        needs_discriminator = [t for t in DISCRIMINATOR_TERMS if t in self.weights]
        if needs_discriminator and discriminator is None:
            raise DistillationError(
                f"loss term `{needs_discriminator[0]}` needs the teacher's discriminator, but "
                "none was given; add one (model.discriminator) or set its weight to 0"
            )
        self.critic = _frozen_copy(discriminator) if discriminator is not None else None
        self.adversary: nn.Module | None = None
        self.adversary_optimizer: torch.optim.Optimizer | None = None
        if "adversarial" in self.weights and losses.discriminator_lr > 0:
            self.adversary = copy.deepcopy(discriminator).train()
            for parameter in self.adversary.parameters():
                parameter.requires_grad_(True)
            self.adversary_optimizer = torch.optim.Adam(
                self.adversary.parameters(), lr=losses.discriminator_lr, betas=ADAM_BETAS
            )
        self.feature_layers: tuple[str, ...] = ()
        self.mappings = nn.ModuleDict()
        if "feature" in self.weights:
            layers = losses.feature_layers or default_feature_layers(student, teacher)
            if not layers:
                raise DistillationError(
                    "the student and teacher share no layer to distil features from; set "
                    "`losses.feature_layers` or the `feature` weight to 0"
                )
            self.feature_layers = tuple(layers)
            shapes = _feature_shapes(student, self.teacher, self.feature_layers, example_input)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for name, (student_shape, teacher_shape) in shapes.items():
                    self.mappings[_key(name)] = _feature_mapping(student_shape, teacher_shape)

    def parameters(self) -> Iterator[nn.Parameter]:
        """The learned feature mappings (trained with the student)."""
        return self.mappings.parameters()

    @torch.no_grad()
    def targets(self, inputs: Inputs | Tensor) -> TeacherTargets:
        """Teacher images, teacher features and fixed-discriminator features of them."""
        with FeatureTap(self.teacher, self.feature_layers) as tap:
            images = self.teacher(*as_inputs(inputs))
        critic_features: tuple[Tensor, ...] = ()
        critic_logits = None
        if self.critic is not None and (
            "perceptual" in self.weights or "class_logits" in self.weights
        ):
            activations, critic_logits = discriminator_features(self.critic, images)
            critic_features = tuple(activations)
        return TeacherTargets(images, dict(tap.outputs), critic_features, critic_logits)

    def terms(
        self, images: Tensor, features: Mapping[str, Tensor], targets: TeacherTargets
    ) -> dict[str, Tensor]:
        """Each active term, unweighted, for student ``images`` and its ``features``."""
        terms: dict[str, Tensor] = {}
        if "pixel" in self.weights:  # Eq. 2
            difference = images - targets.images
            terms["pixel"] = (
                difference.abs().mean()
                if self.losses.pixel_norm == "l1"
                else difference.square().mean()
            )
        if "adversarial" in self.weights:  # Eq. 1 (generator side, non-saturating)
            adversary = self.adversary if self.adversary is not None else self.critic
            logits = adversary(images).flatten()
            terms["adversarial"] = F.binary_cross_entropy_with_logits(
                logits, torch.ones_like(logits)
            )
        if "class_logits" in self.weights or "perceptual" in self.weights:
            activations, logits = discriminator_features(self.critic, images)
            if "class_logits" in self.weights:  # Eq. 4
                terms["class_logits"] = F.mse_loss(logits, targets.critic_logits)
            if "perceptual" in self.weights:  # Eq. 8: sum_t 1/N_t ||D_t(x) - D_t(G_s(z))||_1
                terms["perceptual"] = sum(
                    F.l1_loss(student, teacher)
                    for student, teacher in zip(activations, targets.critic_features, strict=True)
                )
        if "feature" in self.weights:  # Eq. 6 with learned f_t on the student side
            terms["feature"] = sum(
                F.mse_loss(self.mappings[_key(name)](features[name]), targets.features[name])
                for name in self.feature_layers
            )
        return terms

    def total(self, terms: Mapping[str, Tensor]) -> Tensor:
        """The weighted sum (Eq. 3, 5 and 7 are special cases)."""
        return sum(self.weights[name] * value for name, value in terms.items())

    def discriminator_step(self, real: Tensor, fake: Tensor) -> float | None:
        """One update of the trainable discriminator copy (Eq. 1, max side); its loss."""
        if self.adversary is None or self.adversary_optimizer is None:
            return None
        real_logits = self.adversary(real).flatten()
        fake_logits = self.adversary(fake.detach()).flatten()
        loss = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        self.adversary_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.adversary_optimizer.step()
        return loss.item()


def _key(layer: str) -> str:
    return layer.replace(".", "__")


@torch.no_grad()
def _feature_shapes(
    student: nn.Module, teacher: nn.Module, layers: Sequence[str], example_input: Inputs | Tensor
) -> dict[str, tuple[torch.Size, torch.Size]]:
    """(student shape, teacher shape) of each matched layer's output, from one forward."""
    probe = copy.deepcopy(student).eval()  # never touch the student's BN statistics
    with FeatureTap(probe, layers) as student_tap:
        probe(*as_inputs(example_input))
    with FeatureTap(teacher, layers) as teacher_tap:
        teacher(*as_inputs(example_input))
    shapes = {}
    for name in layers:
        outputs = (student_tap.outputs.get(name), teacher_tap.outputs.get(name))
        if not all(isinstance(output, Tensor) for output in outputs):
            raise DistillationError(
                f"layer {name!r} produced no tensor in a forward pass; choose other "
                "`losses.feature_layers`"
            )
        shapes[name] = (outputs[0].shape, outputs[1].shape)
    return shapes
