"""The ``digits`` data: scikit-learn's bundled handwritten digits, nothing downloaded.

1797 grey images of 8x8 pixels with 17 levels (0..16), upsampled bilinearly to 16x16 and
scaled to [-1, 1] (the range of a Tanh generator). The train/test split is fixed by a
seeded permutation, stratified by class, so every machine sees the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 16
SPLIT_SEED = 20240521
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class LabelledImages:
    """Images in [-1, 1] with shape (N, 1, H, W) and their integer class labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def _load_all(size: int) -> LabelledImages:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != pixels.shape[-1]:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    images = (pixels.clamp(0.0, 1.0) * 2.0 - 1.0).contiguous()
    return LabelledImages(images, torch.from_numpy(bunch.target.astype(np.int64)))


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded train/test split of indices."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(TEST_FRACTION * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits_split(split: str, size: int = IMAGE_SIZE) -> LabelledImages:
    """The ``train``, ``test`` or ``all`` split of the digits data."""
    everything = _load_all(size)
    if split == "all":
        return everything
    train, test = split_indices(everything.labels.numpy())
    chosen = {"train": train, "test": test}.get(split)
    if chosen is None:
        raise ValueError(f"`split` must be 'train', 'test' or 'all', but got {split!r}.")
    index = torch.from_numpy(chosen)
    return LabelledImages(everything.images[index], everything.labels[index])
