"""Optional Inception-v3 features for the standard FID (metric ``fid_inception``).

gansearch never downloads weights. This module only works when the user has both
the optional package ``pytorch-fid`` (``pip install 'gansearch[inception]'``) and
the FID Inception weights (``pt_inception-2015-12-05-*.pth``) on local disk;
otherwise it raises :class:`~gansearch.errors.MetricUnavailableError` with a
one-line message. The network is built from pytorch-fid's blocks with
``weights=None`` and filled from the local file, and any download attempted while
building it fails at once instead of hanging.

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
Nash Equilibrium" (NeurIPS 2017) define FID on the 2048-d pool3 features of this
network (Szegedy et al., "Rethinking the Inception Architecture for Computer
Vision", CVPR 2016).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gansearch.errors import CheckpointError, MetricUnavailableError

__all__ = ["INCEPTION_FEATURE_DIM", "INCEPTION_INPUT_SIZE", "load_inception_features"]

INCEPTION_INPUT_SIZE = 299
INCEPTION_FEATURE_DIM = 2048


@contextlib.contextmanager
def _downloads_forbidden(module: ModuleType) -> Iterator[None]:
    """Make every torch.hub download (and pytorch-fid's own) raise at once.

    The patch is scoped to the ``with`` block and undone afterwards; it exists so
    that a pytorch-fid or torchvision version that downloads while building the
    model fails fast on an offline machine instead of hanging.
    """

    def refuse(url: Any = None, *args: Any, **kwargs: Any) -> Any:
        raise MetricUnavailableError(
            f"building the Inception network tried to download {url!r}; "
            "gansearch never downloads weights, pass a local weights file instead"
        )

    targets = [
        (torch.hub, "download_url_to_file"),
        (torch.hub, "load_state_dict_from_url"),
        (module, "load_state_dict_from_url"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets if hasattr(owner, name)]
    try:
        for owner, name, _ in saved:
            setattr(owner, name, refuse)
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def _import_pytorch_fid() -> ModuleType:
    try:
        from pytorch_fid import inception as fid_inception
    except ImportError as exc:
        raise MetricUnavailableError(
            "Inception FID needs the optional package pytorch-fid "
            f"({type(exc).__name__}: {exc}); install it with: pip install 'gansearch[inception]'"
        ) from None
    return fid_inception


def _build_fid_inception(fid_inception: ModuleType) -> nn.Module:
    """The FID variant of Inception-v3 with random weights, as pytorch-fid builds it.

    Mirrors ``pytorch_fid.inception.fid_inception_v3`` minus its download.
    """
    build = getattr(fid_inception, "_inception_v3", None)
    if build is not None:
        net = build(num_classes=1008, aux_logits=False, weights=None)
    else:  # older pytorch-fid: go to torchvision directly
        import torchvision

        net = torchvision.models.inception_v3(
            num_classes=1008, aux_logits=False, weights=None, init_weights=False
        )
    net.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
    net.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
    return net


def _pool3_blocks(net: nn.Module) -> nn.ModuleList:
    """The four blocks of ``pytorch_fid.inception.InceptionV3`` up to pool3, same indices."""
    return nn.ModuleList(
        [
            nn.Sequential(
                net.Conv2d_1a_3x3,
                net.Conv2d_2a_3x3,
                net.Conv2d_2b_3x3,
                nn.MaxPool2d(kernel_size=3, stride=2),
            ),
            nn.Sequential(
                net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)
            ),
            nn.Sequential(
                net.Mixed_5b,
                net.Mixed_5c,
                net.Mixed_5d,
                net.Mixed_6a,
                net.Mixed_6b,
                net.Mixed_6c,
                net.Mixed_6d,
                net.Mixed_6e,
            ),
            nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d((1, 1))),
        ]
    )


def _read_state_dict(weights: Path) -> dict[str, Tensor]:
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - reported as one line
        raise CheckpointError(
            f"cannot read Inception weights {str(weights)!r}: {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"Inception weights {str(weights)!r} must hold a state_dict of tensors, "
            f"but hold {type(state).__name__}"
        )
    return state


class _InceptionPool3(nn.Module):
    """Images in ``[-1, 1]`` -> 2048-d Inception pool3 features, in batches."""

    def __init__(self, blocks: nn.ModuleList, batch_size: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.batch_size = batch_size

    @torch.inference_mode()
    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"`images` must have shape (N, 1 or 3, H, W), but got {tuple(images.shape)}."
            )
        device = next(self.blocks.parameters()).device
        outputs = []
        for chunk in images.split(self.batch_size):
            x = chunk.to(device, torch.float32)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(
                x,
                size=(INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE),
                mode="bilinear",
                align_corners=False,
            )
            for block in self.blocks:
                x = block(x)
            outputs.append(x.flatten(1).cpu())
        return torch.cat(outputs)


def load_inception_features(
    weights: Path,
    *,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> Callable[[Tensor], Tensor]:
    """Build the FID Inception-v3 feature extractor from a local weights file.

    Args:
        weights: Local copy of pytorch-fid's ``pt_inception-2015-12-05-*.pth`` (the
            state_dict of the FID Inception network), or a state_dict of
            ``pytorch_fid.inception.InceptionV3`` (keys ``blocks.*``); ``.pth`` is
            read with ``torch.load(weights_only=True)``, ``.safetensors`` also works.
        batch_size: Images per forward pass.
        device: Where the network runs.

    Returns:
        A callable mapping images ``(N, C, H, W)`` in ``[-1, 1]`` with ``C`` in
        ``{1, 3}`` to float32 pool3 features ``(N, 2048)`` on the CPU. Grey images
        are repeated to three channels; every image is resized bilinearly to
        299x299, as pytorch-fid does.

    Raises:
        MetricUnavailableError: ``weights`` does not exist, pytorch-fid is not
            installed, or building the network attempted a download.
        CheckpointError: The file cannot be read or does not fit the network.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size >= 1` must hold, but got ({batch_size=}).")
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise MetricUnavailableError(
            f"Inception FID needs local weights, but {str(weights)!r} does not exist; "
            "gansearch never downloads weights, so place pytorch-fid's "
            "pt_inception-2015-12-05-*.pth there yourself"
        )
    fid_inception = _import_pytorch_fid()
    state = _read_state_dict(weights)
    with _downloads_forbidden(fid_inception):
        net = _build_fid_inception(fid_inception)
    blocks = _pool3_blocks(net)
    if all(key.startswith("blocks.") for key in state):
        target: nn.Module = nn.Module()
        target.blocks = blocks
    else:
        target = net
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(
            f"Inception weights {str(weights)!r} do not fit the FID Inception network: {detail}"
        ) from None
    extractor = _InceptionPool3(blocks, batch_size).to(device).eval()
    for parameter in extractor.parameters():
        parameter.requires_grad_(False)
    return extractor
