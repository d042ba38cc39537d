"""What a study compresses: a teacher generator, its discriminator, real data and a
feature network, loaded once per process from a bundled benchmark or user factories.

Loading checks what the study file alone cannot, each failure one line that names the
fix: the study's ``device`` is usable here; the weights are finite; the teacher's images
are finite and have the data's shape; the data are floating-point, finite, in the
generator's range ``[-1, 1]`` (within :data:`DATA_RANGE_TOLERANCE`) and at least
``max(2, evaluation.kid_subset_size)`` images when FID/KID are measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gansearch.checkpoints import load_weights
from gansearch.config import CustomModel, StudyConfig
from gansearch.errors import CheckpointError, ConfigError, FactoryError
from gansearch.factories import call_factory


@dataclass(frozen=True)
class Benchmark:
    """A loaded teacher and everything needed to score it and its students.

    Attributes:
        name: benchmark name (or the study name for a custom model).
        teacher: the generator to compress, in eval mode.
        discriminator: its discriminator (for distillation), if any.
        real: reference images (the configured split), in the generator's output range.
        features: network mapping images to ``(features, logits)``, if any.
        latent_shape: shape of one generator input, e.g. ``(64, 1, 1)``.
        data_range: max - min of the output range (2.0 for Tanh).
    """

    name: str
    teacher: nn.Module
    discriminator: nn.Module | None
    real: torch.Tensor
    features: nn.Module | None
    latent_shape: tuple[int, ...]
    data_range: float = 2.0

    def latents(self, n: int, seed: int) -> torch.Tensor:
        """``n`` standard-normal generator inputs from their own seeded generator."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randn((n, *self.latent_shape), generator=generator)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return self.latents(batch_size, seed=0)


def _load_digits(config: StudyConfig) -> Benchmark:
    from gansearch.zoo.data import load_digits_split
    from gansearch.zoo.models import DCGANDiscriminator, DCGANGenerator, DigitsFeatureNet
    from gansearch.zoo.weights_io import weights_dir

    directory = weights_dir("digits", config.weights)
    teacher_hint = "run `gansearch zoo train digits-dcgan` or fix `weights:` in the study file"
    features_hint = "run `gansearch zoo train digits-features` or fix `weights:` in the study file"
    teacher = load_weights(DCGANGenerator(), directory / "generator.safetensors", hint=teacher_hint)
    discriminator = load_weights(
        DCGANDiscriminator(), directory / "discriminator.safetensors", hint=teacher_hint
    )
    features = load_weights(
        DigitsFeatureNet(), directory / "features.safetensors", hint=features_hint
    )
    real = load_digits_split(config.evaluation.reference).images
    return Benchmark(
        "digits",
        teacher.eval(),
        discriminator.eval(),
        real,
        features.eval(),
        (teacher.latent_dim, 1, 1),
    )


BENCHMARKS = {"digits": _load_digits}

DATA_RANGE = (-1.0, 1.0)
"""The range real images must lie in: the generator's output range (``Tanh``) that
:attr:`Benchmark.data_range` and every pixel metric assume."""
DATA_RANGE_TOLERANCE = 0.01
"""How far data may stray outside :data:`DATA_RANGE` (resampling overshoot, rounding);
far too little to let 0..1 or 0..255 pixels through."""


def _as_module(value: object, path: str, role: str) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise FactoryError(
            f"the {role} factory {path!r} returned {type(value).__name__}, not a torch.nn.Module; "
            "return the model instance"
        )
    return value


def _load_custom(name: str, spec: CustomModel) -> Benchmark:
    teacher = _as_module(call_factory(spec.generator, "generator"), spec.generator, "generator")
    if spec.generator_checkpoint is not None:
        load_weights(teacher, spec.generator_checkpoint, hint="fix `model.generator_checkpoint`")
    discriminator = None
    if spec.discriminator is not None:
        discriminator = _as_module(
            call_factory(spec.discriminator, "discriminator"), spec.discriminator, "discriminator"
        )
        if spec.discriminator_checkpoint is not None:
            load_weights(
                discriminator,
                spec.discriminator_checkpoint,
                hint="fix `model.discriminator_checkpoint`",
            )
    real = _checked_data(call_factory(spec.data, "data"), spec.data)
    features = None
    if spec.features is not None:
        features = _as_module(call_factory(spec.features, "features"), spec.features, "features")
    for module, path, role in (
        (teacher, spec.generator, "generator"),
        (discriminator, spec.discriminator, "discriminator"),
        (features, spec.features, "features"),
    ):
        if module is not None:
            _check_finite_weights(module, f"the {role} from {path!r}")
    benchmark = Benchmark(name, teacher.eval(), discriminator, real, features, spec.latent_shape)
    _check_shapes(benchmark)
    if features is not None:
        _check_features(features.eval(), real, spec.features or "")
    return benchmark


def _checked_data(real: object, path: str) -> torch.Tensor:
    """The data factory's images, refused unless float, finite and in :data:`DATA_RANGE`."""
    if not isinstance(real, torch.Tensor) or real.dim() < 2:
        raise FactoryError(
            f"the data factory {path!r} must return a tensor of images (N, C, H, W), "
            f"got {type(real).__name__}"
        )
    low, high = DATA_RANGE
    scale = "e.g. x.float() / 127.5 - 1 for 0..255 pixels or 2 * x - 1 for 0..1 pixels"
    if not real.is_floating_point():
        raise FactoryError(
            f"the data factory {path!r} returned {real.dtype} images; return float images in "
            f"the generator's range [{low:g}, {high:g}], {scale}"
        )
    if not torch.isfinite(real).all():
        raise FactoryError(
            f"the data factory {path!r} returned NaN or inf values; return finite images"
        )
    smallest, largest = float(real.min()), float(real.max())
    if smallest < low - DATA_RANGE_TOLERANCE or largest > high + DATA_RANGE_TOLERANCE:
        raise FactoryError(
            f"the data factory {path!r} returned values in [{smallest:.4g}, {largest:.4g}], "
            f"outside the generator's range [{low:g}, {high:g}]; scale them, {scale}"
        )
    return real.float()


def _check_finite_weights(module: nn.Module, what: str) -> None:
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FactoryError(
                f"{what} has NaN or inf in `{name}`; fix the factory or its checkpoint"
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


def _check_shapes(benchmark: Benchmark) -> None:
    """Fail early, with one line, when the generator's input or output does not fit."""
    try:
        with torch.inference_mode():
            sample = benchmark.teacher(benchmark.example_input(2))
    except Exception as error:  # noqa: BLE001 - user model rejected the configured input
        raise ConfigError(
            f"the generator rejects inputs of shape {(2, *benchmark.latent_shape)} "
            f"({type(error).__name__}: {error}); fix `model.latent_shape`"
        ) from None
    if not torch.isfinite(sample).all():
        raise ConfigError(
            "the generator makes NaN or inf images from standard-normal latents; fix its "
            "weights (`model.generator_checkpoint`) or its factory"
        )
    if tuple(sample.shape[1:]) != tuple(benchmark.real.shape[1:]):
        raise ConfigError(
            f"shape mismatch: the generator makes images of shape {tuple(sample.shape[1:])} but "
            f"the data factory returns {tuple(benchmark.real.shape[1:])}; make them agree"
        )


def check_device(device: str) -> None:
    """Refuse, in one line, a device torch cannot use in this process (e.g. no GPU)."""
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, NotImplementedError) as error:  # no such device here
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "not available"
        raise ConfigError(
            f"device {device!r} is not usable here ({reason}); set `device: cpu` in the study "
            "file, or run where that device exists"
        ) from None


def check_reference_size(config: StudyConfig, benchmark: Benchmark) -> None:
    """Enough real images for FID (at least 2) and for KID's subsets, when they are measured."""
    count = benchmark.real.shape[0]
    needed = max(2, config.evaluation.kid_subset_size) if benchmark.features is not None else 2
    if count < needed:
        why = (
            f"FID needs at least 2 and KID `evaluation.kid_subset_size` = "
            f"{config.evaluation.kid_subset_size}"
            if benchmark.features is not None
            else "at least 2 are needed"
        )
        raise ConfigError(
            f"the reference data has {count} image(s) but {why}; give at least {needed} "
            f"images{' or lower kid_subset_size' if needed > 2 else ''}"
        )


def load_benchmark(config: StudyConfig) -> Benchmark:
    """Load the study's teacher, data and feature network (call once per process).

    Raises:
        ConfigError: for a device that is unusable here, non-finite teacher images, a
            shape mismatch or too few reference images.
        FactoryError: for a factory that fails or returns bad data (see the module doc).
        CheckpointError: for a missing, unreadable, non-finite or mismatching checkpoint.
    """
    check_device(config.device)
    benchmark = _load(config)
    check_reference_size(config, benchmark)
    return benchmark


def _load(config: StudyConfig) -> Benchmark:
    if config.model is not None:
        return _load_custom(config.name, config.model)
    loader = BENCHMARKS.get(config.benchmark or "")
    if loader is None:
        raise ConfigError(
            f"unknown benchmark {config.benchmark!r}; known: {', '.join(sorted(BENCHMARKS))} "
            "(or give `model:` factories)"
        )
    try:
        return loader(config)
    except CheckpointError:
        raise
    except FileNotFoundError as error:
        raise CheckpointError(f"{error}; check `weights:` in the study file") from None


__all__ = ["BENCHMARKS", "Benchmark", "load_benchmark"]
