"""Safe weight I/O: safetensors only (or ``torch.load(weights_only=True)`` for ``.pt``).

Nothing here unpickles arbitrary objects. Every failure a user can cause (missing file,
unreadable file, a tensor whose shape does not fit the model or that holds NaN or inf) is a
:class:`~gansearch.errors.CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from gansearch.errors import CheckpointError
from gansearch.files import atomic_path


def state_digest(module: nn.Module) -> str:
    """SHA-256 of ``module.state_dict()``: every name, dtype, shape and raw byte (a cache key
    for what was computed from these weights)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, *, hint: str = "") -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file, or a ``.pt`` file with ``weights_only``."""
    path = Path(path)
    fix = f"; {hint}" if hint else "; check the path"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}{fix}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file, not a bug
        raise CheckpointError(f"cannot read checkpoint {path}: {error}{fix}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} is not a flat mapping of tensors{fix}")
    return state


def load_weights(model: nn.Module, path: str | Path, *, hint: str = "") -> nn.Module:
    """Load a checkpoint into ``model`` strictly, with one-line errors on any mismatch."""
    state = read_state_dict(path, hint=hint)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: {what}; "
            "was it saved from a different architecture?"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"checkpoint {path}: `{name}` has shape {tuple(tensor.shape)} but the model "
                f"expects {tuple(expected[name].shape)}; was it saved from a different width?"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"checkpoint {path}: `{name}` holds NaN or inf values; retrain the model or "
                "use a checkpoint saved before training diverged"
            )
    model.load_state_dict(state)
    return model


def save_weights(model: nn.Module, path: str | Path) -> str:
    """Write ``model``'s state dict as safetensors atomically; returns its SHA-256."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {
        name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, tmp)
    return sha256_file(path)
