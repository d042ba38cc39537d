"""Knowledge-distillation fine-tuning of a compressed generator (survey Eq. 1-8).

A student generator (pruned, factorised and/or fake-quantised copy of the teacher) is
trained to mimic the frozen teacher on the same inputs, under the weighted sum of the
survey's knowledge-distillation terms
(:class:`~gansearch.compress.distill_loss.DistillationLoss`).

Quantisation-aware: the optimiser gets ``student.parameters()``, which includes the
parametrisations' own parameters (e.g. shared codebook centroids), and the student runs in
training mode, so gradients reach the float weights through the straight-through
estimator of :mod:`gansearch.compress.fakequant`.

Never worse than the start: before the first step, every ``validate_every`` steps and
after the last, the student is measured in eval mode on a fixed validation batch (inputs
drawn with their own seed, never a training batch): the mean absolute difference to the
teacher's outputs, the pixel term of Eq. 2 on held-out inputs. The state with the lowest
value is returned, so a run that degrades its starting point (BatchNorm statistics
shifted by small training batches, randomly initialised feature mappings dominating the
first steps, a learning rate too high for a quantised student) returns the starting
point, and :attr:`DistillResult.validation` shows where it went wrong.

Determinism: input batches and the real-data order come from their own ``torch.Generator``
seeded from ``recipe.seed``; the initialisation of the learned mappings runs under
``torch.random.fork_rng`` with the same seed, so the global RNG is neither used nor
changed. A run that produces a non-finite loss, output or parameter stops with
:class:`DistillationDiverged`, naming the step and the term.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gansearch.compress.batches import InputSampler, draw, zeros_like
from gansearch.compress.distill_loss import (
    ADAM_BETAS,
    DistillationError,
    DistillationLoss,
    FeatureTap,
)
from gansearch.compress.recipes import DistillRecipe

Progress = Callable[[int, int, dict[str, float]], None]


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
        validation: ``(step, value)`` of every validation, step 0 being the start.
        best_step: The step whose state ``student`` holds (0: the starting point).
    """

    student: nn.Module
    history: tuple[Mapping[str, float], ...]
    discriminator: nn.Module | None = None
    validation: tuple[tuple[int, float], ...] = ()
    best_step: int = 0

    def first(self) -> Mapping[str, float]:
        """Loss record of the first step."""
        return self.history[0]

    def last(self) -> Mapping[str, float]:
        """Loss record of the last step."""
        return self.history[-1]


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


VALIDATION_SAMPLES = 64
"""Inputs in the fixed validation batch that picks the returned state."""
VALIDATIONS = 10
"""Validations per run besides the start and the end (every ``steps // VALIDATIONS``)."""


Measure = Callable[[nn.Module], float]
"""A validation measure: student -> value, lower is better, computed in eval mode."""


def teacher_l1_measure(teacher: nn.Module, inputs: InputSampler, seed: int) -> Measure:
    """Mean |student - teacher| on a fixed held-out batch (the pixel term of Eq. 2).

    The default validation measure: the batch of :data:`VALIDATION_SAMPLES` inputs is drawn
    with the run's own validation stream (:func:`validation_seed`), never a training batch.
    It needs nothing but the teacher; :func:`gansearch.evaluate.validation_measure`
    measures the study's own quality metric instead, which is what a study should select on
    (a student can move closer to the teacher in L1 while its FID gets worse).
    """
    batch = draw(inputs, VALIDATION_SAMPLES, seed=validation_seed(seed))
    with torch.no_grad():
        reference = teacher(*batch)

    def measure(student: nn.Module) -> float:
        with torch.no_grad():
            return (student(*batch) - reference).abs().mean().item()

    return measure


class BestState:
    """Tracks the student state with the lowest validation value (module docstring).

    Args:
        measure: student -> value, lower is better; called in eval mode (BatchNorm uses
            its running statistics and is not updated), the training mode is restored.
    """

    def __init__(self, measure: Measure) -> None:
        self.measure_fn = measure
        self.values: list[tuple[int, float]] = []
        self.best: tuple[int, float, dict[str, Tensor]] | None = None

    def measure(self, student: nn.Module) -> float:
        """The validation value of ``student`` in eval mode (NaN counts as infinity)."""
        training = student.training
        student.eval()
        try:
            value = float(self.measure_fn(student))
        finally:
            student.train(training)
        return value if value == value else float("inf")  # NaN is never the best

    def update(self, step: int, student: nn.Module) -> None:
        value = self.measure(student)
        self.values.append((step, value))
        if self.best is None or value < self.best[1]:
            self.best = (step, value, copy.deepcopy(student.state_dict()))

    def restore(self, student: nn.Module) -> int:
        """Load the best state into ``student``; returns its step."""
        assert self.best is not None
        step, _, state = self.best
        student.load_state_dict(state)
        return step


def validation_seed(seed: int) -> int:
    """Seed of the validation batch, derived from the run's seed (independent stream)."""
    return seed + 2_000_003


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
    recipe: DistillRecipe,
    *,
    inputs: InputSampler,
    validate: Measure | None = None,
    progress: Progress | None = None,
) -> DistillResult:
    """Fine-tune a copy of ``student`` to mimic ``teacher`` for ``recipe.steps`` steps.

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
        recipe: Steps, learning rate, batch size, seed and loss weights.
        inputs: Draws the generators' input batches (latents, images, ...; see
            :mod:`gansearch.compress.batches`) from the training split.
        validate: The held-out measure that picks the returned state (lower is better;
            e.g. :func:`gansearch.evaluate.validation_measure`, the study's FID or PSNR
            on held-out inputs); default :func:`teacher_l1_measure`.
        progress: Called as ``progress(step, steps, losses)`` after each step.

    Returns:
        The student copy in its best validated state (eval mode; the starting state
        when no step improved it), the per-step loss history and the validation curve.

    Raises:
        DistillationDiverged: at the first non-finite loss term, output or parameter,
            naming the step and the term.
        DistillationError: when a configured term cannot be computed (no discriminator,
            no real data, an unknown feature layer).
    """
    losses = recipe.losses
    student = copy.deepcopy(student)
    input_rng = torch.Generator().manual_seed(recipe.seed)
    example = zeros_like(draw(inputs, 1, seed=0))
    loss = DistillationLoss(student, teacher, discriminator, losses, example, seed=recipe.seed)
    batches = None
    if loss.adversary is not None:
        if data is None:
            raise DistillationError(
                "`discriminator_lr > 0` trains the discriminator on real data, but no data was "
                "given; pass the real images or set `discriminator_lr: 0`"
            )
        data_rng = torch.Generator().manual_seed(data_seed(recipe.seed))
        batches = real_batches(data, recipe.batch_size, data_rng)
    optimizer = torch.optim.Adam(
        [*student.parameters(), *loss.parameters()], lr=recipe.lr, betas=ADAM_BETAS
    )
    history: list[dict[str, float]] = []
    if validate is None:
        validate = teacher_l1_measure(loss.teacher, inputs, recipe.seed)
    tracker = BestState(validate)
    tracker.update(0, student)
    every = max(1, recipe.steps // VALIDATIONS)
    student.train()
    with FeatureTap(student, loss.feature_layers) as tap:
        for step in range(1, recipe.steps + 1):
            batch = inputs.sample(recipe.batch_size, input_rng)
            targets = loss.targets(batch)
            images = student(*batch)
            check_finite(images, "the student's output", step, recipe.lr)
            terms = loss.terms(images, tap.outputs, targets)
            total = loss.total(terms)
            check_terms(terms, total, step, recipe.lr)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            check_parameters([student, loss.mappings], step, recipe.lr)
            record = {name: value.item() for name, value in terms.items()}
            record["total"] = total.item()
            if batches is not None:
                d_loss = loss.discriminator_step(next(batches), images)
                check_finite(torch.tensor(d_loss), "the discriminator loss", step, recipe.lr)
                record["discriminator"] = d_loss
            history.append(record)
            if step % every == 0 or step == recipe.steps:
                tracker.update(step, student)
            if progress is not None:
                progress(step, recipe.steps, record)
    best = tracker.restore(student)
    return DistillResult(
        student.eval(), tuple(history), loss.adversary, tuple(tracker.values), best
    )
