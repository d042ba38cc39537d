"""What a study compresses: a teacher generator, its discriminator, real data and a
feature network, loaded once per process from a bundled benchmark or user factories.

Loading checks what the study file alone cannot, each failure one line that names the
fix: the study's ``device`` is usable here; at least ``max(2,
evaluation.kid_subset_size)`` reference images when FID/KID are measured; and, for a
user's model, everything :mod:`gansearch.user_model` checks (finite weights, data in the
generator's range, output shapes that fit the data, targets where PSNR/SSIM are asked).
"""

from __future__ import annotations

import torch

from gansearch.benchmark import Benchmark
from gansearch.checkpoints import load_weights
from gansearch.config import StudyConfig
from gansearch.errors import CheckpointError, ConfigError
from gansearch.inputs import ImageSource, LatentSource
from gansearch.user_model import load_user_model


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
    latents = LatentSource((teacher.latent_dim, 1, 1))
    return Benchmark(
        "digits", teacher.eval(), discriminator.eval(), real, features.eval(), latents, latents
    )


def _load_photos(config: StudyConfig) -> Benchmark:
    """x4 super-resolution of bundled photographs (see :mod:`gansearch.zoo.photos`)."""
    from gansearch.zoo.photos import load_photos_split
    from gansearch.zoo.resnet import NLayerDiscriminator, ResnetGenerator
    from gansearch.zoo.weights_io import weights_dir

    directory = weights_dir("photos", config.weights)
    hint = "run `gansearch zoo train photos-sr` or fix `weights:` in the study file"
    teacher = load_weights(ResnetGenerator(), directory / "generator.safetensors", hint=hint)
    discriminator = load_weights(
        NLayerDiscriminator(), directory / "discriminator.safetensors", hint=hint
    )
    evaluation = load_photos_split(config.evaluation.reference)
    train = load_photos_split("train")
    return Benchmark(
        "photos",
        teacher.eval(),
        discriminator.eval(),
        evaluation.targets,
        None,
        ImageSource(evaluation.inputs, evaluation.targets),
        ImageSource(train.inputs, train.targets),
    )


BENCHMARKS = {"digits": _load_digits, "photos": _load_photos}


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
        return load_user_model(config)
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
