"""Knowledge distillation (gansearch.compress.distill) on the toy generator.

The discriminator is a tiny one defined here with a ``features`` method, as the digits
discriminator has; one test also covers a discriminator without it (hooked layers).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gansearch.compress import describe, magnitude_masks, prune_channels
from gansearch.compress.distill import DistillationDiverged, distill
from gansearch.compress.distill_loss import (
    DistillationError,
    default_feature_layers,
    discriminator_features,
)
from gansearch.compress.encodings import parse_encoding
from gansearch.compress.fakequant import attach_weight_encoding
from gansearch.compress.importance import channel_importance
from gansearch.compress.recipes import DistillLosses, DistillRecipe
from gansearch.config import parse_study
from gansearch.errors import ConfigError, GansearchError
from gansearch.inputs import LatentSource
from tests.toy_models import toy_generator

LATENT_SHAPE = (8,)


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyDiscriminator(nn.Module):
    """Image (N, 1, 8, 8) -> logit (N,), with ``features`` like DCGANDiscriminator."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.LeakyReLU(0.2)),
                nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.LeakyReLU(0.2)),
            ]
        )
        self.head = nn.Linear(16 * 2 * 2, 1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        activations = []
        for block in self.blocks:
            x = block(x)
            activations.append(x)
        return activations, self.head(x.flatten(1)).flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


def _pruned_student(teacher: nn.Module, ratio: float = 0.5) -> nn.Module:
    example = torch.zeros(2, *LATENT_SHAPE)
    structure = describe(teacher, example)
    masks = magnitude_masks(structure, channel_importance(teacher, structure, example), ratio)
    return prune_channels(teacher, structure, masks, example)


def _config(steps: int = 20, lr: float = 5e-3, seed: int = 0, **weights: float) -> DistillRecipe:
    losses = DistillLosses(**{"pixel": 0.0, **weights})
    return DistillRecipe(steps=steps, lr=lr, batch_size=16, seed=seed, losses=losses)


def _teacher_l1(student: nn.Module, teacher: nn.Module) -> float:
    z = torch.randn((256, *LATENT_SHAPE), generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return (student.eval()(z) - teacher.eval()(z)).abs().mean().item()


def _mean(history, term: str, part: slice) -> float:
    values = [record[term] for record in history[part]]
    return sum(values) / len(values)


@pytest.mark.parametrize("term", ["pixel", "adversarial", "class_logits", "feature", "perceptual"])
def test_each_term_alone_reduces_its_own_loss(term: str) -> None:
    """With the discriminator fixed (``discriminator_lr: 0``), each term is a plain loss."""
    teacher = toy_generator(0)
    result = distill(
        _pruned_student(teacher),
        teacher,
        TinyDiscriminator(),
        None,
        _config(steps=24, **{term: 1.0}),
        inputs=LatentSource(LATENT_SHAPE),
    )
    assert set(result.last()) == {term, "total"}  # weight 0 = the term is not computed
    assert _mean(result.history, term, slice(-4, None)) < 0.8 * _mean(
        result.history, term, slice(0, 4)
    )


def test_pixel_distillation_moves_pruned_student_toward_teacher() -> None:
    teacher = toy_generator(0)
    student = _pruned_student(teacher, 0.5)
    before = _teacher_l1(student, teacher)
    result = distill(
        student,
        teacher,
        None,
        None,
        _config(steps=40, pixel=1.0),
        inputs=LatentSource(LATENT_SHAPE),
    )
    assert _teacher_l1(result.student, teacher) < 0.7 * before
    assert _teacher_l1(student, teacher) == before  # the caller's student is a separate copy


def test_l2_pixel_norm_is_squared_error() -> None:
    teacher = toy_generator(0)
    student = _pruned_student(teacher)
    l1 = distill(
        student, teacher, None, None, _config(steps=1, pixel=1.0), inputs=LatentSource((8,))
    )
    l2_config = DistillRecipe(
        steps=1, lr=5e-3, batch_size=16, losses=DistillLosses(pixel=1.0, pixel_norm="l2")
    )
    l2 = distill(student, teacher, None, None, l2_config, inputs=LatentSource((8,)))
    z = torch.randn((16, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = student.train()(z) - teacher(z)
    assert l1.first()["pixel"] == pytest.approx(difference.abs().mean().item(), rel=1e-5)
    assert l2.first()["pixel"] == pytest.approx(difference.square().mean().item(), rel=1e-5)


def test_all_terms_together_with_a_trained_discriminator_copy() -> None:
    teacher, discriminator = toy_generator(0), TinyDiscriminator()
    real = torch.tanh(torch.randn((64, 1, 8, 8), generator=torch.Generator().manual_seed(1)))
    state = copy.deepcopy(discriminator.state_dict())
    losses = {
        "pixel": 1.0,
        "adversarial": 0.1,
        "class_logits": 0.1,
        "feature": 1.0,
        "perceptual": 1.0,
        "discriminator_lr": 1e-3,
    }
    config = DistillRecipe(steps=6, lr=5e-3, batch_size=16, losses=DistillLosses(**losses))
    result = distill(
        _pruned_student(teacher),
        teacher,
        discriminator,
        real,
        config,
        inputs=LatentSource(LATENT_SHAPE),
    )
    assert set(result.last()) == {*losses} - {"discriminator_lr"} | {"total", "discriminator"}
    assert result.discriminator is not None and result.discriminator is not discriminator
    trained = result.discriminator.state_dict()
    assert any(not torch.equal(trained[k], state[k]) for k in state)
    assert all(torch.equal(discriminator.state_dict()[k], state[k]) for k in state)


def test_teacher_and_discriminator_are_never_mutated() -> None:
    teacher, discriminator = toy_generator(0), TinyDiscriminator()
    teacher_state = copy.deepcopy(teacher.state_dict())
    discriminator_state = copy.deepcopy(discriminator.state_dict())
    discriminator.train()
    config = _config(steps=3, pixel=1.0, adversarial=1.0, feature=1.0, perceptual=1.0)
    distill(
        _pruned_student(teacher), teacher, discriminator, None, config, inputs=LatentSource((8,))
    )
    assert not teacher.training and discriminator.training  # modes untouched too
    for name, tensor in teacher.state_dict().items():
        assert torch.equal(tensor, teacher_state[name]), name
    for name, tensor in discriminator.state_dict().items():
        assert torch.equal(tensor, discriminator_state[name]), name


def test_deterministic_per_seed() -> None:
    teacher = toy_generator(0)
    student = _pruned_student(teacher)
    torch.manual_seed(1)  # the global RNG must not matter ...
    first = distill(
        student,
        teacher,
        None,
        None,
        _config(steps=5, pixel=1.0, feature=1.0),
        inputs=LatentSource((8,)),
    )
    torch.manual_seed(2)
    second = distill(
        student,
        teacher,
        None,
        None,
        _config(steps=5, pixel=1.0, feature=1.0),
        inputs=LatentSource((8,)),
    )
    other = distill(
        student,
        teacher,
        None,
        None,
        _config(steps=5, seed=7, pixel=1.0, feature=1.0),
        inputs=LatentSource((8,)),
    )
    assert first.history == second.history
    for name, tensor in first.student.state_dict().items():
        assert torch.equal(tensor, second.student.state_dict()[name]), name
    assert first.history != other.history
    # ... and is not consumed either.
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    distill(student, teacher, None, None, _config(steps=1, feature=1.0), inputs=LatentSource((8,)))
    assert torch.equal(torch.rand(3), expected)


def test_huge_learning_rate_raises_distillation_diverged() -> None:
    teacher = toy_generator(0)
    with pytest.raises(DistillationDiverged) as caught:
        distill(
            _pruned_student(teacher),
            teacher,
            None,
            None,
            _config(steps=20, lr=1e30, pixel=1.0, feature=1.0),
            inputs=LatentSource(LATENT_SHAPE),
        )
    message = str(caught.value)
    assert "\n" not in message and "diverged at step" in message and "lower `lr`" in message
    assert isinstance(caught.value, GansearchError)  # the CLI prints it as one line


class NaNAfter(nn.Module):
    """Wraps a generator and returns NaN images from its third training-mode call on
    (distillation's validation passes run in eval mode and are not counted)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        out = self.inner(z)
        return out * float("nan") if self.calls >= 3 else out


def test_nan_output_raises_naming_step_and_output() -> None:
    teacher = toy_generator(0)
    student = NaNAfter(_pruned_student(teacher))
    # Only the pixel term: no shape probe, so call n is training step n.
    with pytest.raises(DistillationDiverged, match=r"at step 3: the student's output is nan"):
        distill(
            student, teacher, None, None, _config(steps=5, pixel=1.0), inputs=LatentSource((8,))
        )


def test_nan_loss_term_is_named() -> None:
    teacher = toy_generator(0)
    discriminator = TinyDiscriminator()
    with torch.no_grad():
        discriminator.head.bias.fill_(float("nan"))
    with pytest.raises(DistillationDiverged, match=r"step 1: loss term `class_logits` is nan"):
        distill(
            _pruned_student(teacher),
            teacher,
            discriminator,
            None,
            _config(steps=2, class_logits=1.0),
            inputs=LatentSource(LATENT_SHAPE),
        )


def test_fake_quantised_student_trains_through_ste() -> None:
    teacher = toy_generator(0)
    student = _pruned_student(teacher)
    attach_weight_encoding(student.res.conv1, parse_encoding("int4"))
    attach_weight_encoding(student.side, parse_encoding("codebook4"))
    original = student.res.conv1.parametrizations.weight.original.detach().clone()
    centroids = student.side.parametrizations.weight[0].centroids.detach().clone()
    result = distill(
        student,
        teacher,
        None,
        None,
        _config(steps=25, pixel=1.0),
        inputs=LatentSource(LATENT_SHAPE),
    )
    trained = result.student
    # Gradients reached the float weight (int4) and the shared centroids (codebook) by STE.
    assert not torch.equal(trained.res.conv1.parametrizations.weight.original, original)
    assert not torch.equal(trained.side.parametrizations.weight[0].centroids, centroids)
    assert _mean(result.history, "pixel", slice(-4, None)) < _mean(
        result.history, "pixel", slice(0, 4)
    )
    # The encodings still hold: <= k shared values, <= 16 levels per int4 channel.
    assert trained.side.weight.unique().numel() <= 4
    for row in trained.res.conv1.weight.detach().flatten(1):
        assert row.unique().numel() <= 16


def test_feature_layers_default_to_shared_norm_layers_and_unknown_ones_fail() -> None:
    teacher = toy_generator(0)
    student = _pruned_student(teacher)
    assert default_feature_layers(student, teacher) == (
        "up_norm",
        "res.norm1",
        "res.norm2",
        "side_norm",
    )
    config = DistillRecipe(
        steps=1, batch_size=4, losses=DistillLosses(feature=1.0, feature_layers=("res.nope",))
    )
    with pytest.raises(DistillationError, match=r"layer 'res.nope' is not in"):
        distill(student, teacher, None, None, config, inputs=LatentSource(LATENT_SHAPE))


def test_discriminator_terms_without_discriminator_fail_clearly() -> None:
    teacher = toy_generator(0)
    with pytest.raises(DistillationError, match=r"`perceptual` needs the teacher's discriminator"):
        distill(teacher, teacher, None, None, _config(perceptual=1.0), inputs=LatentSource((8,)))


def test_discriminator_without_features_method_is_hooked() -> None:
    plain = nn.Sequential(
        nn.Conv2d(1, 4, 3, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(4, 8, 3, 2, 1),
        nn.Flatten(),
        nn.Linear(32, 1),
    )
    activations, logits = discriminator_features(plain, torch.zeros(3, 1, 8, 8))
    assert [tuple(a.shape) for a in activations] == [(3, 4, 4, 4), (3, 8, 2, 2)]
    assert logits.shape == (3,)


def test_study_sections_validate() -> None:
    base = {"name": "x", "benchmark": "digits"}
    config = parse_study({**base, "distill": {"steps": 5, "losses": {"feature": 2.0}}})
    recipe = config.distill.recipe()
    assert recipe == DistillRecipe(steps=5, losses=DistillLosses(feature=2.0))
    assert recipe.losses.active() == {"pixel": 1.0, "feature": 2.0}
    supernet = parse_study({**base, "supernet": {"ratios": [1.0, 0.5]}}).supernet.recipe()
    assert supernet.ratios == (0.5, 1.0) and supernet.losses.active() == {
        "pixel": 1.0,
        "feature": 1.0,
    }
    with pytest.raises(ConfigError, match=r"at least one loss weight must be > 0"):
        parse_study({**base, "distill": {"losses": {"pixel": 0}}})
    with pytest.raises(ConfigError, match=r"unknown key `distill.losses.pixle`"):
        parse_study({**base, "distill": {"losses": {"pixle": 1}}})
    with pytest.raises(ConfigError, match=r"`supernet.ratios`"):
        parse_study({**base, "supernet": {"ratios": [0.5, 1.5]}})


def test_distillation_never_returns_a_state_worse_than_its_start() -> None:
    """A recipe that wrecks the student (huge learning rate) gives back the start."""
    teacher = toy_generator(0)
    student = _pruned_student(teacher, 0.75)
    before = _teacher_l1(student, teacher)
    result = distill(
        student,
        teacher,
        None,
        None,
        _config(steps=10, lr=0.5, pixel=1.0),
        inputs=LatentSource(LATENT_SHAPE),
    )
    steps, values = zip(*result.validation, strict=True)
    assert steps == tuple(range(11))  # the start, then every step (10 // VALIDATIONS = 1)
    assert max(values[1:]) > values[0]  # the recipe did degrade the student ...
    assert result.best_step == steps[values.index(min(values))]
    assert _teacher_l1(result.student, teacher) <= before + 1e-6  # ... yet nothing is lost
    if result.best_step == 0:
        for name, tensor in student.state_dict().items():
            assert torch.equal(tensor, result.student.state_dict()[name]), name


def test_distillation_returns_its_best_validated_state() -> None:
    teacher = toy_generator(0)
    student = _pruned_student(teacher, 0.5)
    result = distill(
        student,
        teacher,
        None,
        None,
        _config(steps=30, pixel=1.0),
        inputs=LatentSource(LATENT_SHAPE),
    )
    best = min(value for _, value in result.validation)
    assert result.best_step > 0 and dict(result.validation)[result.best_step] == best
    assert best < result.validation[0][1]
    assert _teacher_l1(result.student, teacher) < _teacher_l1(student, teacher)


def test_distilling_the_teacher_itself_returns_the_teacher() -> None:
    """The identity candidate (the study's teacher trial) is not changed by fine-tuning:
    any step moves it away from the teacher, so the start state is kept."""
    teacher = toy_generator(0)
    result = distill(
        copy.deepcopy(teacher),
        teacher,
        None,
        None,
        _config(steps=5, pixel=1.0),
        inputs=LatentSource(LATENT_SHAPE),
    )
    assert result.best_step == 0 and result.validation[0][1] == 0.0
    for name, tensor in teacher.state_dict().items():
        assert torch.equal(tensor, result.student.state_dict()[name]), name


def test_distillation_keeps_the_state_its_validation_measure_ranks_best() -> None:
    """``validate`` (e.g. the study's FID on held-out inputs) picks the returned state,
    not the teacher-L1 default: here the third validation is made the best."""
    teacher = toy_generator(0)
    student = _pruned_student(teacher, 0.5)
    values = iter([5.0, 4.0, 1.0, 3.0, 2.0, 6.0, 7.0, 8.0, 9.0, 9.5, 9.7, 9.9])
    seen: list[dict[str, torch.Tensor]] = []

    def validate(model: torch.nn.Module) -> float:
        seen.append({name: t.clone() for name, t in model.state_dict().items()})
        return next(values)

    result = distill(
        student,
        teacher,
        None,
        None,
        _config(steps=10, pixel=1.0),
        inputs=LatentSource(LATENT_SHAPE),
        validate=validate,
    )
    steps = [step for step, _ in result.validation]
    assert [value for _, value in result.validation] == [
        5.0,
        4.0,
        1.0,
        3.0,
        2.0,
        6.0,
        7.0,
        8.0,
        9.0,
        9.5,
        9.7,
    ]
    assert result.best_step == steps[2] == 2
    for name, tensor in seen[2].items():  # the returned weights are those of step 2
        assert torch.equal(tensor, result.student.state_dict()[name]), name
    assert any(not torch.equal(seen[2][n], t) for n, t in seen[-1].items())  # training moved on
