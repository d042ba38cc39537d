"""Knowledge-distillation fine-tuning of a compressed generator (survey Eq. 1-8).

A student generator (pruned, factorised and/or fake-quantised copy of the teacher) is
trained to mimic the frozen teacher on the same latents. Every term of the survey's
knowledge-distillation section can be switched on and weighted from the study YAML
(:class:`~gansearch.config.DistillLosses`; weight 0 = off, the term is not computed):

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

Quantisation-aware: the optimiser gets ``student.parameters()``, which includes the
parametrisations' own parameters (e.g. shared codebook centroids), and the student runs in
training mode, so gradients reach the float weights through the straight-through
estimator of :mod:`gansearch.compress.fakequant`.

Determinism: latents and the real-data order come from their own ``torch.Generator``
seeded from ``config.seed``; the initialisation of the learned mappings runs under
``torch.random.fork_rng`` with the same seed, so the global RNG is neither used nor
changed. A run that produces a non-finite loss, output or parameter stops with
:class:`DistillationDiverged`, naming the step and the term.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gansearch.config import DistillConfig, DistillLosses
from gansearch.errors import GansearchError

Progress = Callable[[int, int, dict[str, float]], None]

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)
LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
DISCRIMINATOR_TERMS = ("adversarial", "class_logits", "perceptual")
ADAM_BETAS = (0.5, 0.999)  # Radford et al. (DCGAN, ICLR 2016), as the digits teacher


class DistillationError(GansearchError):
    """Distillation cannot be set up as configured (missing discriminator, unknown layer)."""


class DistillationDiverged(DistillationError):
    """A distillation run produced a non-finite loss, output or parameter."""


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DistillResult:
    """The outcome of :func:`distill`.

    Attributes:
        student: The trained student (a copy; the caller's student is unchanged), in
            eval mode.
        history: One record per step: each active term's unweighted value and
            ``total`` (the weighted sum), plus ``discriminator`` when it is trained.
        discriminator: The trained copy of the discriminator, when
            ``discriminator_lr > 0``; else ``None``.
    """

    student: nn.Module
    history: tuple[Mapping[str, float], ...]
    discriminator: nn.Module | None = None

    def first(self) -> Mapping[str, float]:
        """Loss record of the first step."""
        return self.history[0]

    def last(self) -> Mapping[str, float]:
        """Loss record of the last step."""
        return self.history[-1]


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
    layers = [n for n, m in named if isinstance(m, LAYER_TYPES)][:-1]
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
    layers = [n for n, m in discriminator.named_modules() if isinstance(m, LAYER_TYPES)][:-1]
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
    """What the teacher side contributes for one latent batch (no gradients)."""

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
        example_input: A latent batch the generators accept (for shapes only).
        seed: Seed of the mappings' initialisation (under ``torch.random.fork_rng``).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        discriminator: nn.Module | None,
        losses: DistillLosses,
        example_input: Tensor,
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
    def targets(self, latents: Tensor) -> TeacherTargets:
        """Teacher images, teacher features and fixed-discriminator features of them."""
        with FeatureTap(self.teacher, self.feature_layers) as tap:
            images = self.teacher(latents)
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
    student: nn.Module, teacher: nn.Module, layers: Sequence[str], example_input: Tensor
) -> dict[str, tuple[torch.Size, torch.Size]]:
    """(student shape, teacher shape) of each matched layer's output, from one forward."""
    probe = copy.deepcopy(student).eval()  # never touch the student's BN statistics
    with FeatureTap(probe, layers) as student_tap:
        probe(example_input)
    with FeatureTap(teacher, layers) as teacher_tap:
        teacher(example_input)
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


# ---------------------------------------------------------------------------------------
# Divergence checks
# ---------------------------------------------------------------------------------------


def check_finite(value: Tensor, what: str, step: int, lr: float) -> None:
    """Raise :class:`DistillationDiverged` if ``value`` has a NaN or infinity.

    Args:
        value: A loss term, an output batch or a parameter.
        what: What it is, e.g. "loss term `pixel`" (named in the message).
        step: The 1-based step it was computed at.
        lr: The learning rate (named in the suggested fix).
    """
    if not bool(torch.isfinite(value).all()):
        bad = value.detach().flatten()
        bad = bad[~torch.isfinite(bad)][0].item()
        raise DistillationDiverged(
            f"distillation diverged at step {step}: {what} is {bad}; lower `lr` "
            f"(now {lr:g}) or the loss weights"
        )


def check_parameters(modules: Iterable[nn.Module], step: int, lr: float) -> None:
    """Raise :class:`DistillationDiverged` naming the first non-finite parameter."""
    for module in modules:
        for name, parameter in module.named_parameters():
            check_finite(parameter, f"parameter `{name}`", step, lr)


def check_terms(terms: Mapping[str, Tensor], total: Tensor, step: int, lr: float) -> None:
    """Every loss term (then the total) must be finite."""
    for name, value in terms.items():
        check_finite(value, f"loss term `{name}`", step, lr)
    check_finite(total, "the total loss", step, lr)


# ---------------------------------------------------------------------------------------
# distill()
# ---------------------------------------------------------------------------------------


def data_seed(seed: int) -> int:
    """Seed of the real-data order, derived from the run's seed (independent stream)."""
    return seed + 1_000_003


def real_batches(data: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless shuffled batches of real images, in an order drawn from ``generator``."""
    if data.shape[0] < batch_size:
        raise DistillationError(
            f"the real data has {data.shape[0]} images, fewer than one batch of {batch_size}; "
            "lower `batch_size`"
        )
    while True:
        order = torch.randperm(data.shape[0], generator=generator)
        for start in range(0, data.shape[0] - batch_size + 1, batch_size):
            yield data[order[start : start + batch_size]]


def distill(
    student: nn.Module,
    teacher: nn.Module,
    discriminator: nn.Module | None,
    data: Tensor | None,
    config: DistillConfig,
    *,
    latent_shape: Sequence[int],
    progress: Progress | None = None,
) -> DistillResult:
    """Fine-tune a copy of ``student`` to mimic ``teacher`` for ``config.steps`` steps.

    Knowledge distillation as surveyed in the module docstring (survey Eq. 1-8;
    Aguinaldo et al. 2019; Yu & Pool 2020; Li et al., GAN Compression, CVPR 2020;
    Jin et al. 2021). Student and mappings are trained with Adam(``lr``, betas
    (0.5, 0.999)); the teacher and the caller's discriminator are never modified.

    Args:
        student: The compressed generator (may carry fake-quant parametrisations).
        teacher: The teacher generator.
        discriminator: The teacher's discriminator, or ``None`` when no term needs it.
        data: Real images for the discriminator update (``discriminator_lr > 0``), else
            unused and may be ``None``.
        config: Steps, learning rate, batch size, seed and loss weights.
        latent_shape: Shape of one generator input, e.g. ``(64, 1, 1)``.
        progress: Called as ``progress(step, steps, losses)`` after each step.

    Returns:
        The trained student copy (eval mode) and the per-step loss history.

    Raises:
        DistillationDiverged: at the first non-finite loss term, output or parameter,
            naming the step and the term.
        DistillationError: when a configured term cannot be computed (no discriminator,
            no real data, an unknown feature layer).
    """
    losses = config.losses
    latent_shape = tuple(latent_shape)
    student = copy.deepcopy(student)
    latent_rng = torch.Generator().manual_seed(config.seed)
    example = torch.zeros((2, *latent_shape))
    loss = DistillationLoss(student, teacher, discriminator, losses, example, seed=config.seed)
    batches = None
    if loss.adversary is not None:
        if data is None:
            raise DistillationError(
                "`discriminator_lr > 0` trains the discriminator on real data, but no data was "
                "given; pass the real images or set `discriminator_lr: 0`"
            )
        data_rng = torch.Generator().manual_seed(data_seed(config.seed))
        batches = real_batches(data, config.batch_size, data_rng)
    optimizer = torch.optim.Adam(
        [*student.parameters(), *loss.parameters()], lr=config.lr, betas=ADAM_BETAS
    )
    history: list[dict[str, float]] = []
    student.train()
    with FeatureTap(student, loss.feature_layers) as tap:
        for step in range(1, config.steps + 1):
            latents = torch.randn((config.batch_size, *latent_shape), generator=latent_rng)
            targets = loss.targets(latents)
            images = student(latents)
            check_finite(images, "the student's output", step, config.lr)
            terms = loss.terms(images, tap.outputs, targets)
            total = loss.total(terms)
            check_terms(terms, total, step, config.lr)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            check_parameters([student, loss.mappings], step, config.lr)
            record = {name: value.item() for name, value in terms.items()}
            record["total"] = total.item()
            if batches is not None:
                d_loss = loss.discriminator_step(next(batches), images)
                check_finite(torch.tensor(d_loss), "the discriminator loss", step, config.lr)
                record["discriminator"] = d_loss
            history.append(record)
            if progress is not None:
                progress(step, config.steps, record)
    return DistillResult(student.eval(), tuple(history), loss.adversary)
