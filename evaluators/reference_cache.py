"""The on-disk cache of reference features, keyed by a content hash of their inputs.

The features of the real images depend on the images, the feature network and the
protocol; computing them is the slow part of preparing a scorer.
:func:`cached_reference_features` stores them once per distinct set of inputs, keyed by
:func:`content_hash` of everything they depend on, and hands them back with their
Gaussian statistics for FID (:mod:`gansearch.evaluators.quality`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gansearch.errors import UnwritableError
from gansearch.evaluators.quality import GaussianStats, feature_matrix, gaussian_stats
from gansearch.files import atomic_path

__all__ = ["ReferenceFeatures", "cached_reference_features", "content_hash"]

_CACHE_FORMAT_VERSION = "1"


def _tensor_bytes(tensor: Tensor) -> bytes:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def content_hash(*parts: bytes | str | Tensor) -> str:
    """SHA-256 hex digest over bytes, strings and tensors, in order.

    Tensors are hashed by dtype, shape and the raw bytes of their contiguous CPU
    copy, so equal tensors hash equally whatever their device or strides.

    Args:
        *parts: The values the hashed artifact depends on.

    Returns:
        64 hexadecimal characters.
    """
    hasher = hashlib.sha256()

    def _update(tag: bytes, payload: bytes) -> None:
        # Tag and length prefix keep the encoding unambiguous (b"ab" + b"c" != b"a" + b"bc").
        hasher.update(tag + len(payload).to_bytes(8, "little") + payload)

    for part in parts:
        if isinstance(part, Tensor):
            header = f"{part.dtype}|{tuple(part.shape)}".encode()
            _update(b"T", header)
            _update(b"D", _tensor_bytes(part))
        elif isinstance(part, str):
            _update(b"S", part.encode("utf-8"))
        elif isinstance(part, (bytes, bytearray, memoryview)):
            _update(b"B", bytes(part))
        else:
            raise TypeError(
                f"`parts` must be bytes, str or torch.Tensor, but got {type(part).__name__}."
            )
    return hasher.hexdigest()


@dataclass(frozen=True, eq=False)
class ReferenceFeatures:
    """Features of the real images, with their Gaussian statistics and cache key.

    Attributes:
        features: float32 CPU tensor of shape ``(N, D)`` (needed by KID).
        stats: :func:`gaussian_stats` of ``features`` (needed by FID).
        key: SHA-256 hex digest of everything the features depend on.
    """

    features: Tensor
    stats: GaussianStats
    key: str


def _reference_key(key_parts: Mapping[str, bytes | str | Tensor]) -> str:
    if not key_parts:
        raise ValueError("`key_parts` must name at least one input, but got none.")
    flat: list[bytes | str | Tensor] = []
    for name in sorted(key_parts):
        flat.extend((name, key_parts[name]))
    return content_hash(_CACHE_FORMAT_VERSION, *flat)


def _read_cached(path: Path, key: str) -> Tensor | None:
    """The cached features, or ``None`` when the file is missing, unreadable or stale."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("key") != key:
                return None
            features = handle.get_tensor("features")
    except Exception:  # noqa: BLE001 - any unreadable cache file is recomputed
        return None
    if features.ndim != 2 or features.shape[0] < 2 or features.dtype != torch.float32:
        return None
    return features


def _write_cached(path: Path, features: Tensor, key: str) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({"features": features}, str(tmp), metadata={"key": key})


def _unwritable(cache_dir: Path, error: OSError) -> UnwritableError:
    return UnwritableError(
        f"cannot write the reference-feature cache in {cache_dir} ({error.strerror}); set "
        "`evaluation.cache_dir:` in the study file, or $GANSEARCH_CACHE, to a writable folder"
    )


def cached_reference_features(
    key_parts: Mapping[str, bytes | str | Tensor],
    compute: Callable[[], Tensor],
    cache_dir: Path,
) -> ReferenceFeatures:
    """Load the reference features from the cache, or compute and store them.

    The key is the SHA-256 over the key parts sorted by name (callers pass e.g. the
    real-image tensor, the feature network's state_dict digest and the protocol
    string), so any change to an input gives a new file. The file
    ``cache_dir / f"ref-{key[:16]}.safetensors"`` holds the features and the full
    key in its metadata; it is written atomically (temporary file in the same
    directory, then ``os.replace``). A missing, corrupt or mismatching file is
    recomputed and overwritten.

    Args:
        key_parts: Named inputs the features depend on.
        compute: Produces the ``(N, D)`` features; called only on a cache miss.
        cache_dir: Directory of the cache; created if needed.

    Returns:
        The features, their Gaussian statistics and the key.

    Raises:
        UnwritableError: when ``cache_dir`` cannot be created or written (read-only, not
            a folder, full); the message names the folder and the settings that move it.
    """
    key = _reference_key(key_parts)
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(cache_dir, error) from None
    path = cache_dir / f"ref-{key[:16]}.safetensors"

    features = _read_cached(path, key)
    if features is None:
        computed = compute()
        if not isinstance(computed, Tensor):
            raise TypeError(
                f"`compute` must return a torch.Tensor, but returned {type(computed).__name__}."
            )
        feature_matrix(computed, "compute()")
        features = computed.detach().to("cpu", torch.float32).contiguous()
        try:
            _write_cached(path, features, key)
        except OSError as error:
            raise _unwritable(cache_dir, error) from None
    return ReferenceFeatures(features=features, stats=gaussian_stats(features), key=key)
