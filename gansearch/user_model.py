"""A user's own GAN, loaded from the study's ``model:`` factories without code edits.

Every check here fails with one line naming the fix: the factories return modules with
finite weights (checkpoints loaded through :mod:`gansearch.checkpoints`), the generator's
Conv/Linear weights plain parameters (no spectral norm left on); the data are
floating-point, finite and (for images the generator is compared with) in the
generator's range ``[-1, 1]`` within :data:`DATA_RANGE_TOLERANCE`; the generator accepts
its declared inputs (:mod:`gansearch.inputs`) and makes finite images of the data's shape;
a feature network maps images to ``(features, logits)``; a discriminator that a loss
term uses scores images alone (as distillation calls it); PSNR/SSIM are asked only of data
with targets; ``evaluation.reference`` reaches a data factory that takes ``split``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from gansearch.benchmark import Benchmark
from gansearch.checkpoints import load_weights
from gansearch.compress.dependency import COMPRESSIBLE_TYPES
from gansearch.compress.distill_loss import DISCRIMINATOR_TERMS, discriminator_features
from gansearch.config import CustomModel, DistillConfig, StudyConfig
from gansearch.errors import ConfigError, FactoryError
from gansearch.evaluators.objectives import PAIRED_METRICS, Constraint
from gansearch.factories import call_factory, resolve_factory
from gansearch.inputs import (
    ConditionalSource,
    FunctionSource,
    ImageSource,
    InputSource,
    LatentSource,
)

DATA_RANGE = (-1.0, 1.0)
"""The range real images must lie in: the generator's output range (``Tanh``) that
:attr:`Benchmark.data_range` and every pixel metric assume."""
DATA_RANGE_TOLERANCE = 0.01
"""How far data may stray outside :data:`DATA_RANGE` (resampling overshoot, rounding);
far too little to let 0..1 or 0..255 pixels through."""
_SCALE = "e.g. x.float() / 127.5 - 1 for 0..255 pixels or 2 * x - 1 for 0..1 pixels"


def load_user_model(config: StudyConfig) -> Benchmark:
    """The study's teacher, discriminator, data, features and inputs from its factories."""
    spec = config.model
    assert spec is not None  # the caller dispatches on it
    teacher = _module(spec.generator, "generator", spec.generator_checkpoint, spec.generator_kwargs)
    _check_plain_weights(teacher, spec.generator)
    discriminator = None
    if spec.discriminator is not None:
        discriminator = _module(
            spec.discriminator, "discriminator", spec.discriminator_checkpoint
        ).eval()
    features = None
    if spec.features is not None:
        features = _module(spec.features, "features", spec.features_checkpoint).eval()
    split = (
        config.evaluation.reference if "reference" in config.evaluation.model_fields_set else None
    )
    real, inputs = _data(spec, split)
    train_inputs = _data(spec, "train")[1] if split not in (None, "train") else inputs
    benchmark = Benchmark(
        config.name, teacher.eval(), discriminator, real, features, inputs, train_inputs
    )
    _check_shapes(benchmark, spec)
    _check_targets(config, spec, benchmark)
    if features is not None:
        _check_features(features, real, spec.features or "")
    if discriminator is not None:
        _check_discriminator(discriminator, real, config)
    return benchmark


def _module(
    path: str, role: str, checkpoint: object, kwargs: dict[str, object] | None = None
) -> nn.Module:
    value = call_factory(path, role, kwargs)
    if not isinstance(value, nn.Module):
        raise FactoryError(
            f"the {role} factory {path!r} returned {type(value).__name__}, not a torch.nn.Module; "
            "return the model instance"
        )
    if checkpoint is not None:
        load_weights(value, checkpoint, hint=f"fix `model.{role}_checkpoint`")
    for name, tensor in value.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FactoryError(
                f"the {role} from {path!r} has NaN or inf in `{name}`; fix the factory or its "
                "checkpoint"
            )
    return value


def _check_plain_weights(generator: nn.Module, path: str) -> None:
    """Conv/Linear weights must be parameters, not computed by a reparametrisation.

    Spectral normalisation (Miyato et al., ICLR 2018) and weight normalisation, old-style
    (hooks) or ``torch.nn.utils.parametrizations``, compute ``weight`` from other tensors;
    pruning and weight encodings act on ``weight`` itself, so such a generator would be
    searched and then fail to export. At inference the weight is fixed: the user removes
    the reparametrisation after loading the trained weights.
    """
    computed = [
        name
        for name, module in generator.named_modules()
        if isinstance(module, COMPRESSIBLE_TYPES) and not isinstance(module.weight, nn.Parameter)
    ]
    if computed:
        listed = ", ".join(repr(name) for name in computed[:3])
        more = f" and {len(computed) - 3} more" if len(computed) > 3 else ""
        raise FactoryError(
            f"the generator from {path!r} computes the weights of {listed}{more} from other "
            "tensors (spectral or weight normalisation); in the factory, load the trained "
            "weights, then remove it from each layer with torch.nn.utils.parametrize."
            "remove_parametrizations(layer, 'weight') (or torch.nn.utils.remove_spectral_norm)"
        )


def _data(spec: CustomModel, split: str | None) -> tuple[torch.Tensor, InputSource]:
    """(reference images, input source) from the data factory, for ``split`` if given."""
    kwargs = {}
    if split is not None:
        factory = resolve_factory(spec.data, "data")
        try:
            inspect.signature(factory).bind(split=split)
        except (TypeError, ValueError):
            raise ConfigError(
                f"`evaluation.reference: {split}` needs the data factory {spec.data!r} to take "
                "a `split` argument ('train', 'test' or 'all'); add it, or remove "
                "`evaluation.reference`"
            ) from None
        kwargs = {"split": split}
    data = call_factory(spec.data, "data", kwargs)
    if spec.inputs in ("paired", "unpaired"):
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise FactoryError(
                f"with `model.inputs: {spec.inputs}` the data factory {spec.data!r} must return "
                f"(inputs, targets), two image tensors; got {type(data).__name__}"
            )
        images = _images(data[0], spec.data, "inputs", in_range=False)
        targets = _images(data[1], spec.data, "targets")
        paired = spec.inputs == "paired"
        if paired and images.shape[0] != targets.shape[0]:
            raise FactoryError(
                f"the data factory {spec.data!r} returned {images.shape[0]} inputs but "
                f"{targets.shape[0]} targets; paired data needs one target per input"
            )
        return targets, ImageSource(images, targets if paired else None)
    real = _images(data, spec.data, "images")
    if spec.inputs == "latents":
        return real, LatentSource(spec.latent_shape or ())
    if spec.inputs == "conditional":
        return real, ConditionalSource(spec.latent_shape or (), spec.num_classes or 2)
    return real, FunctionSource(resolve_factory(spec.inputs, "inputs"), spec.inputs)


def _images(value: object, path: str, what: str, *, in_range: bool = True) -> torch.Tensor:
    """``value`` as float images, refused unless finite and (``in_range``) in the range."""
    if not isinstance(value, torch.Tensor) or value.dim() < 2:
        raise FactoryError(
            f"the data factory {path!r} must return a tensor of {what} (N, C, H, W), "
            f"got {type(value).__name__}"
        )
    low, high = DATA_RANGE
    if not value.is_floating_point():
        raise FactoryError(
            f"the data factory {path!r} returned {value.dtype} {what}; return float images in "
            f"the generator's range [{low:g}, {high:g}], {_SCALE}"
        )
    if not torch.isfinite(value).all():
        raise FactoryError(
            f"the data factory {path!r} returned NaN or inf values in its {what}; return "
            "finite images"
        )
    smallest, largest = float(value.min()), float(value.max())
    if in_range and (
        smallest < low - DATA_RANGE_TOLERANCE or largest > high + DATA_RANGE_TOLERANCE
    ):
        raise FactoryError(
            f"the data factory {path!r} returned {what} in [{smallest:.4g}, {largest:.4g}], "
            f"outside the generator's range [{low:g}, {high:g}]; scale them, {_SCALE}"
        )
    return value.float()


def _check_shapes(benchmark: Benchmark, spec: CustomModel) -> None:
    """Fail early, with one line, when the generator's input or output does not fit."""
    fix = "`model.latent_shape`" if spec.latent_shape is not None else "`model.inputs`"
    example = benchmark.example_input(2)
    try:
        with torch.inference_mode():
            sample = benchmark.teacher(*example)
    except Exception as error:  # noqa: BLE001 - user model rejected the configured input
        shapes = ", ".join(str(tuple(part.shape)) for part in example)
        raise ConfigError(
            f"the generator rejects its {benchmark.inputs.kind} inputs of shape {shapes} "
            f"({type(error).__name__}: {error}); fix {fix}"
        ) from None
    if not isinstance(sample, torch.Tensor):
        raise ConfigError(
            f"the generator returns {type(sample).__name__}, not an image tensor; return the "
            "images (N, C, H, W)"
        )
    if not torch.isfinite(sample).all():
        raise ConfigError(
            f"the generator makes NaN or inf images from its {benchmark.inputs.kind} inputs; "
            "fix its weights (`model.generator_checkpoint`) or its factory"
        )
    if tuple(sample.shape[1:]) != tuple(benchmark.real.shape[1:]):
        raise ConfigError(
            f"shape mismatch: the generator makes images of shape {tuple(sample.shape[1:])} but "
            f"the data factory returns {tuple(benchmark.real.shape[1:])}; make them agree"
        )


def _check_targets(config: StudyConfig, spec: CustomModel, benchmark: Benchmark) -> None:
    """PSNR/SSIM objectives or constraints need inputs that come with targets."""
    if benchmark.inputs.paired:
        return
    asked = [*config.objectives, *(Constraint.parse(c).metric for c in config.search.constraints)]
    for name in asked:
        if name in PAIRED_METRICS:
            raise ConfigError(
                f"objective {name!r} needs ground truth, but the inputs function "
                f"{spec.inputs!r} returns no targets; return "
                "{'inputs': ..., 'targets': ...} or remove it"
            )


def _check_features(features: nn.Module, real: torch.Tensor, path: str) -> None:
    """The feature network must map images to finite ``(features, logits)``."""
    try:
        with torch.inference_mode():
            output = features(real[:2])
    except Exception as error:  # noqa: BLE001 - the user's network rejected the data
        raise FactoryError(
            f"the features network from {path!r} fails on the data "
            f"({type(error).__name__}: {error}); fix `model.features`"
        ) from None
    if (
        not isinstance(output, tuple)
        or len(output) != 2
        or not all(isinstance(part, torch.Tensor) and part.dim() == 2 for part in output)
    ):
        raise FactoryError(
            f"the features network from {path!r} must return (features, logits), two "
            "(N, D) tensors; fix `model.features`"
        )
    if not all(torch.isfinite(part).all() for part in output):
        raise FactoryError(
            f"the features network from {path!r} returns NaN or inf on the data; fix its "
            "weights or `model.features`"
        )


def _discriminator_terms(config: StudyConfig) -> list[str]:
    """The study's loss settings that call the discriminator (``distill.losses.adversarial``...)."""
    sections = [("distill", config.distill or DistillConfig())]
    if config.space.ofa is not None and config.supernet is not None:
        sections.append(("supernet", config.supernet))
    used = []
    for name, section in sections:
        weights = section.losses
        used += [f"{name}.losses.{t}" for t in DISCRIMINATOR_TERMS if getattr(weights, t) > 0]
        if weights.discriminator_lr > 0:
            used.append(f"{name}.losses.discriminator_lr")
    return used


def _check_discriminator(discriminator: nn.Module, real: torch.Tensor, config: StudyConfig) -> None:
    """A discriminator that a loss term uses must score images alone, as distillation calls it.

    (A class-conditional ``D(images, labels)`` would otherwise fail every trial.)
    """
    used = _discriminator_terms(config)
    if not used:
        return
    path = config.model.discriminator if config.model is not None else ""
    try:
        with torch.inference_mode():
            _, logits = discriminator_features(discriminator, real[:2])
    except Exception as error:  # noqa: BLE001 - the user's network rejected the images
        raise FactoryError(
            f"the discriminator from {path!r} fails on a batch of images "
            f"({type(error).__name__}: {error}); `{used[0]}` calls it as D(images): give a "
            "discriminator of the images alone, or set that weight to 0"
        ) from None
    if not torch.isfinite(logits).all():
        raise FactoryError(
            f"the discriminator from {path!r} returns NaN or inf on the data; fix its weights "
            "(`model.discriminator_checkpoint`) or its factory"
        )
