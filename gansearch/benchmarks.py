"""What a study compresses: a teacher generator, its discriminator, real data and a
feature network, loaded once per process from a bundled benchmark or user factories."""

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
    real = call_factory(spec.data, "data")
    if not isinstance(real, torch.Tensor) or real.dim() < 2:
        raise FactoryError(
            f"the data factory {spec.data!r} must return a tensor of images (N, C, H, W), "
            f"got {type(real).__name__}"
        )
    features = None
    if spec.features is not None:
        features = _as_module(call_factory(spec.features, "features"), spec.features, "features")
    benchmark = Benchmark(
        name, teacher.eval(), discriminator, real.float(), features, spec.latent_shape
    )
    _check_shapes(benchmark)
    return benchmark


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
    if tuple(sample.shape[1:]) != tuple(benchmark.real.shape[1:]):
        raise ConfigError(
            f"shape mismatch: the generator makes images of shape {tuple(sample.shape[1:])} but "
            f"the data factory returns {tuple(benchmark.real.shape[1:])}; make them agree"
        )


FEATURE_METRICS = ("fid", "kid", "is")


def check_measurable(config: StudyConfig, benchmark: Benchmark) -> None:
    """Every objective must be computable with what the study provides."""
    for name in config.objectives:
        if name in FEATURE_METRICS and benchmark.features is None:
            raise ConfigError(
                f"objective {name!r} needs a feature network; add "
                "`model.features: module:function` or remove it from `objectives`"
            )
        if name == "fid_inception" and config.evaluation.inception is None:
            raise ConfigError(
                "objective 'fid_inception' needs local Inception weights; set "
                "`evaluation.inception.weights: PATH` or remove it from `objectives`"
            )


def load_benchmark(config: StudyConfig) -> Benchmark:
    """Load the study's teacher, data and feature network (call once per process)."""
    benchmark = _load(config)
    check_measurable(config, benchmark)
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
