"""What a study's generator consumes: the one definition every stage draws inputs from.

A study declares its generator's inputs once (``model.inputs``, or the bundled
benchmark's own); calibration, distillation, supernet training, scoring, latency, export
(ONNX input names and shapes) and sample grids all draw from the same
:class:`InputSource`:

- ``latents``: standard-normal latents of ``latent_shape`` (DCGAN, StyleGAN-like);
- ``conditional``: latents plus class labels, called ``G(z, labels)`` (class-conditional
  generators; labels are uniform over ``num_classes``);
- ``paired``: images with ground-truth targets (pix2pix, super-resolution), scored with
  PSNR/SSIM against the targets;
- ``unpaired``: source-domain images (CycleGAN-style), scored with FID/KID against real
  target-domain images;
- a user ``module:function`` called as ``function(n, seed)`` that returns the inputs (a
  tensor or a tuple of tensors), or ``{"inputs": ..., "targets": ...}`` when it also has
  ground truth.

Each draw is deterministic given its seed: evaluation seed ``s`` always gives the same
batch, so every candidate is scored on the same inputs, and the spread over seeds is the
noise floor. Image sources draw without replacement from their split (a seeded
permutation), or with replacement when more samples are asked for than the split holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gansearch.compress.batches import Inputs, as_inputs
from gansearch.errors import FactoryError


@dataclass(frozen=True)
class Batch:
    """Generator inputs and, for paired data, the ground truth for each sample."""

    inputs: Inputs
    targets: Tensor | None = None


class InputSource(ABC):
    """A deterministic supply of generator inputs (and targets, where they exist).

    Subclasses implement :meth:`draw`; :meth:`sample` makes every source an
    :class:`~gansearch.compress.batches.InputSampler` for the compress layer.
    """

    kind: str = ""
    names: tuple[str, ...] = ("input",)
    """Names of the generator's positional inputs (the ONNX graph's input names)."""

    @abstractmethod
    def draw(self, n: int, generator: torch.Generator) -> Batch:
        """``n`` samples; all randomness comes from ``generator``."""

    @property
    def paired(self) -> bool:
        """Whether draws carry ground-truth targets (PSNR/SSIM are measurable)."""
        return False

    def sample(self, n: int, generator: torch.Generator) -> Inputs:
        return self.draw(n, generator).inputs

    def batch(self, n: int, seed: int) -> Batch:
        """``n`` samples from a generator seeded by ``seed`` (the same on every call)."""
        return self.draw(n, torch.Generator().manual_seed(seed))


class LatentSource(InputSource):
    """Standard-normal latents of ``shape`` per sample."""

    kind = "latents"
    names = ("z",)

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)

    def draw(self, n: int, generator: torch.Generator) -> Batch:
        return Batch((torch.randn((n, *self.shape), generator=generator),))


class ConditionalSource(InputSource):
    """Latents and uniform class labels in ``[0, num_classes)``, fed as ``G(z, labels)``."""

    kind = "conditional"
    names = ("z", "label")

    def __init__(self, shape: tuple[int, ...], num_classes: int) -> None:
        self.shape = tuple(shape)
        self.num_classes = num_classes

    def draw(self, n: int, generator: torch.Generator) -> Batch:
        latents = torch.randn((n, *self.shape), generator=generator)
        labels = torch.randint(0, self.num_classes, (n,), generator=generator)
        return Batch((latents, labels))


class ImageSource(InputSource):
    """Images from a fixed split, with their targets when the task is paired."""

    names = ("image",)

    def __init__(self, images: Tensor, targets: Tensor | None = None) -> None:
        if targets is not None and targets.shape[0] != images.shape[0]:
            raise ValueError(
                f"paired data needs one target per input, but got {images.shape[0]} inputs "
                f"and {targets.shape[0]} targets"
            )
        self.images = images
        self.targets = targets
        self.kind = "paired" if targets is not None else "unpaired"

    @property
    def paired(self) -> bool:
        return self.targets is not None

    def draw(self, n: int, generator: torch.Generator) -> Batch:
        count = self.images.shape[0]
        if n <= count:
            index = torch.randperm(count, generator=generator)[:n]
        else:
            index = torch.randint(0, count, (n,), generator=generator)
        targets = self.targets[index] if self.targets is not None else None
        return Batch((self.images[index],), targets)


class FunctionSource(InputSource):
    """A user's ``function(n, seed)`` returning inputs, or ``{"inputs", "targets"}``.

    Args:
        function: the user's function.
        path: its ``module:function`` path (for error messages).

    The function is called once with ``(2, 0)`` on construction, to learn whether it
    returns targets and how many inputs it yields.
    """

    kind = "function"

    def __init__(self, function: Callable[..., object], path: str) -> None:
        self.function = function
        self.path = path
        first = self.call(2, 0)
        self._paired = first.targets is not None
        self.names = tuple(f"input{i}" for i in range(len(first.inputs)))

    @property
    def paired(self) -> bool:
        return self._paired

    def draw(self, n: int, generator: torch.Generator) -> Batch:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        return self.call(n, seed)

    def call(self, n: int, seed: int) -> Batch:
        """The function's batch for ``(n, seed)``, checked; one line on any problem."""
        try:
            value = self.function(n, seed)
        except Exception as error:  # noqa: BLE001 - the user's function failed
            raise FactoryError(
                f"the inputs function {self.path!r} failed for (n={n}, seed={seed}) "
                f"({type(error).__name__}: {error}); fix `model.inputs`"
            ) from None
        targets = None
        if isinstance(value, dict):
            if "inputs" not in value or not set(value) <= {"inputs", "targets"}:
                raise FactoryError(
                    f"the inputs function {self.path!r} returned a dict with keys "
                    f"{sorted(value)}; return {{'inputs': ..., 'targets': ...}}"
                )
            targets, value = value.get("targets"), value["inputs"]
        try:
            inputs = as_inputs(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise FactoryError(f"the inputs function {self.path!r}: {error}") from None
        parts = inputs if targets is None else (*inputs, targets)
        if not all(isinstance(part, Tensor) and part.shape[:1] == (n,) for part in parts):
            raise FactoryError(
                f"the inputs function {self.path!r} must return {n} samples for n={n} "
                "(dimension 0 of every tensor, targets included)"
            )
        if any(p.is_floating_point() and not torch.isfinite(p).all() for p in parts):
            raise FactoryError(
                f"the inputs function {self.path!r} returned NaN or inf values; return finite "
                "inputs"
            )
        return Batch(inputs, targets)
