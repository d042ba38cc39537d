"""The ``photos`` data: joint denoising and x4 super-resolution of real photographs,
nothing downloaded.

Sources are the photographs that installed packages ship inside their wheels:
scikit-image's ``skimage/data`` folder (read from the package path; the images that
``skimage.data`` would fetch with pooch are never used) and scikit-learn's two sample
images (``load_sample_image``). Logos, text, charts, synthetic and binary images are left
out. Grey photographs (textures, ``camera``, ``coins``, ``moon``) are kept for training
only, converted to RGB by repeating the grey channel: they add texture variety, and the
test split holds colour photographs only.

Whole images are held out for the test split (:data:`TEST_IMAGES`), so no test pixel is
ever seen in training.

Each sample is a 64x64 RGB patch in [-1, 1] at the photograph's native resolution (the
target, "HR"); its x4 downscale by area averaging (each LR pixel is the mean of a 4x4 HR
block, the exact anti-aliased box filter) with additive Gaussian noise of standard
deviation :data:`NOISE_SIGMA` (0.1 in [-1, 1], i.e. 12.75 on the 0..255 scale; a fixed
draw per patch, seeded per split), clamped to [-1, 1] (``lr``, 16x16); and the generator
input: ``lr`` upsampled back to 64x64 by bicubic interpolation (``F.interpolate(mode=
"bicubic", align_corners=False)``, clamped to [-1, 1]), so the generator maps an image to
an image of the same size, as pix2pix does. The bicubic input itself is the classical
baseline. The task is joint denoising and upscaling (a camera's noisy low-resolution
capture), where a learned generator clearly beats interpolation; on noise-free x4
super-resolution a teacher small enough to train here in half an hour on one CPU core
gained only 0.13 dB over bicubic.

Train patches are :data:`TRAIN_PATCHES` random crops drawn with :data:`SPLIT_SEED` (an image
chosen with probability proportional to its number of crop positions, then a uniform
position). Test patches are the non-overlapping, centred 64x64 grid of each test image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gansearch.errors import GansearchError

PATCH_SIZE = 64
SCALE = 4
SPLIT_SEED = 20240521
TRAIN_PATCHES = 2048
DATA_RANGE = 2.0  # images live in [-1, 1]
NOISE_SIGMA = 0.1
"""Standard deviation of the Gaussian noise on the low-resolution images, in [-1, 1] units."""
NOISE_SEEDS = {"train": SPLIT_SEED + 1, "test": SPLIT_SEED + 2}

# (package, file name). The colour photographs held out for the test split:
TEST_IMAGES: tuple[tuple[str, str], ...] = (
    ("skimage", "chelsea.png"),
    ("skimage", "coffee.png"),
    ("skimage", "rocket.jpg"),
    ("sklearn", "flower.jpg"),
)
TRAIN_IMAGES: tuple[tuple[str, str], ...] = (
    ("skimage", "astronaut.png"),
    ("skimage", "hubble_deep_field.jpg"),
    ("skimage", "ihc.png"),
    ("skimage", "motorcycle_left.png"),
    ("skimage", "motorcycle_right.png"),
    ("sklearn", "china.jpg"),
    # Grey photographs, repeated to RGB.
    ("skimage", "camera.png"),
    ("skimage", "coins.png"),
    ("skimage", "moon.png"),
    ("skimage", "brick.png"),
    ("skimage", "grass.png"),
    ("skimage", "gravel.png"),
)

Split = Literal["train", "test", "all"]
SPLITS = ("train", "test", "all")


class UnknownSplitError(GansearchError):
    """A split name other than train, test or all."""


@dataclass(frozen=True, eq=False)
class PairedImages:
    """Paired super-resolution samples; treat the tensors as read-only (they are cached).

    Attributes:
        inputs: Generator inputs, ``lr`` upsampled bicubically, ``(N, 3, 64, 64)`` in [-1, 1].
        targets: Ground-truth patches, ``(N, 3, 64, 64)`` in [-1, 1].
        lr: The x4 area-averaged downscales, ``(N, 3, 16, 16)`` in [-1, 1].
        names: The source image (``package/file``) of each patch.
    """

    inputs: Tensor
    targets: Tensor
    lr: Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return self.targets.shape[0]


@dataclass(frozen=True)
class PairedScore:
    """PSNR (dB, pooled over the batch) and mean SSIM against ground truth."""

    psnr: float
    ssim: float


def _image_path(package: str, name: str) -> Path:
    if package == "skimage":
        import skimage.data

        return Path(skimage.data.__file__).parent / name
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / name


@functools.cache
def load_photo(package: str, name: str) -> Tensor:
    """One bundled photograph as a ``(3, H, W)`` float tensor in [-1, 1]."""
    from skimage.io import imread

    pixels = np.asarray(imread(_image_path(package, name)))
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    pixels = pixels[:, :, :3].astype(np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).mul(2.0).sub(1.0).contiguous()


def downscale(images: Tensor) -> Tensor:
    """x4 downscale by area averaging (mean of each 4x4 block)."""
    return F.avg_pool2d(images, SCALE)


def bicubic_upsample(lr: Tensor) -> Tensor:
    """x4 bicubic upsampling (``align_corners=False``), clamped to [-1, 1]."""
    up = F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)
    return up.clamp(-1.0, 1.0)


def _pairs(targets: Tensor, names: list[str], noise_seed: int) -> PairedImages:
    clean = downscale(targets)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(noise_seed))
    lr = (clean + NOISE_SIGMA * noise).clamp(-1.0, 1.0)
    return PairedImages(bicubic_upsample(lr).contiguous(), targets, lr.contiguous(), tuple(names))


def _key(source: tuple[str, str]) -> str:
    return f"{source[0]}/{source[1]}"


def _train_patches() -> PairedImages:
    photos = [load_photo(*source) for source in TRAIN_IMAGES]
    positions = np.array(
        [(p.shape[1] - PATCH_SIZE + 1) * (p.shape[2] - PATCH_SIZE + 1) for p in photos], float
    )
    rng = np.random.default_rng(SPLIT_SEED)
    choice = rng.choice(len(photos), size=TRAIN_PATCHES, p=positions / positions.sum())
    crops, names = [], []
    for index in choice:
        photo = photos[index]
        top = int(rng.integers(0, photo.shape[1] - PATCH_SIZE + 1))
        left = int(rng.integers(0, photo.shape[2] - PATCH_SIZE + 1))
        crops.append(photo[:, top : top + PATCH_SIZE, left : left + PATCH_SIZE])
        names.append(_key(TRAIN_IMAGES[index]))
    return _pairs(torch.stack(crops), names, NOISE_SEEDS["train"])


def _test_patches() -> PairedImages:
    crops, names = [], []
    for source in TEST_IMAGES:
        photo = load_photo(*source)
        rows, cols = photo.shape[1] // PATCH_SIZE, photo.shape[2] // PATCH_SIZE
        top0 = (photo.shape[1] - rows * PATCH_SIZE) // 2
        left0 = (photo.shape[2] - cols * PATCH_SIZE) // 2
        for row in range(rows):
            for col in range(cols):
                top, left = top0 + row * PATCH_SIZE, left0 + col * PATCH_SIZE
                crops.append(photo[:, top : top + PATCH_SIZE, left : left + PATCH_SIZE])
                names.append(_key(source))
    return _pairs(torch.stack(crops), names, NOISE_SEEDS["test"])


@functools.cache
def load_photos_split(split: Split) -> PairedImages:
    """The ``train``, ``test`` or ``all`` (train then test) patches; cached per process.

    Raises:
        UnknownSplitError: For any other split name.
    """
    if split == "train":
        return _train_patches()
    if split == "test":
        return _test_patches()
    if split == "all":
        train, test = load_photos_split("train"), load_photos_split("test")
        return PairedImages(
            torch.cat([train.inputs, test.inputs]),
            torch.cat([train.targets, test.targets]),
            torch.cat([train.lr, test.lr]),
            train.names + test.names,
        )
    raise UnknownSplitError(f"unknown photos split {split!r}; use one of {', '.join(SPLITS)}")


def paired_scores(outputs: Tensor, targets: Tensor) -> PairedScore:
    """PSNR and SSIM of ``outputs`` against ``targets`` (both in [-1, 1], data range 2).

    SSIM is Wang et al. (IEEE TIP 2004) with gansearch's default 7x7 Gaussian window.
    """
    from gansearch.evaluators.fidelity import psnr, ssim

    return PairedScore(
        psnr(outputs, targets, data_range=DATA_RANGE),
        ssim(outputs, targets, data_range=DATA_RANGE),
    )


@functools.cache
def bicubic_baseline(split: Split) -> PairedScore:
    """PSNR/SSIM of the bicubic input against the ground truth: the classical baseline."""
    data = load_photos_split(split)
    return paired_scores(data.inputs, data.targets)
