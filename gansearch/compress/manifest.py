"""The artifact manifest: format constants, hashes, and verified reading.

An artifact's ``manifest.json`` records the factory that rebuilds the teacher, the
structure, the plan, the encoding of every stored tensor and the SHA-256 and size of every
file, plus ``manifest_sha256`` over the canonical JSON of everything else. The hashes
detect corruption and accidental edits; they are not a signature: whoever can write the
files can recompute them. See :mod:`gansearch.compress.artifact` for the layout.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from gansearch.errors import GansearchError

FORMAT_NAME = "gansearch-artifact"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
HASH_KEY = "manifest_sha256"
REFERENCE_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class ArtifactError(GansearchError):
    """An artifact that cannot be written or read: the message names the problem and fix."""


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and verify an artifact's manifest (format, version, its own hash).

    Raises:
        ArtifactError: for a missing directory or manifest, unreadable JSON, another
            format or version, or a manifest whose content no longer matches its hash.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise ArtifactError(
            f"artifact not found: {directory} is not a directory; check the path "
            "(artifacts are written by gansearch.export)."
        )
    file = directory / MANIFEST_FILE
    if not file.is_file():
        raise ArtifactError(
            f"artifact {directory} has no {MANIFEST_FILE}; it is incomplete or not an "
            "artifact - export it again."
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArtifactError(
            f"artifact {directory}: {MANIFEST_FILE} is not valid JSON ({error}); the file is "
            "truncated or edited - export it again."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(
            f"artifact {directory}: {MANIFEST_FILE} is not a {FORMAT_NAME} manifest; "
            "check the path."
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact {directory}: `format_version == {FORMAT_VERSION}` must hold, but got "
            f"{version!r}; load it with the gansearch version that wrote it."
        )
    if manifest.get(HASH_KEY) != manifest_digest(manifest):
        raise ArtifactError(
            f"artifact {directory}: {MANIFEST_FILE} does not match its recorded SHA-256 "
            f"({HASH_KEY}); it was edited or corrupted - export the artifact again."
        )
    return manifest


def is_artifact(directory: Path) -> bool:
    try:
        data = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def manifest_digest(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != HASH_KEY}, sort_keys=True, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_record(file: Path) -> dict[str, Any]:
    data = file.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def verified_files(directory: Path, manifest: Mapping[str, Any]) -> bytes:
    """Check every recorded file's size and SHA-256; return the weights file's bytes."""
    files = manifest.get("files")
    if not isinstance(files, dict) or WEIGHTS_FILE not in files:
        raise ArtifactError(
            f"artifact {directory}: the manifest lists no {WEIGHTS_FILE}; export it again."
        )
    weights = b""
    for name, record in sorted(files.items()):
        file = directory / name
        if not file.is_file():
            raise ArtifactError(
                f"artifact {directory} is missing {name}; the artifact is incomplete - "
                "export it again."
            )
        data = file.read_bytes()
        if len(data) != record.get("bytes"):
            raise ArtifactError(
                f"artifact {directory}: {name} has {len(data)} bytes but the manifest records "
                f"{record.get('bytes')}; the file is truncated or replaced - export it again."
            )
        if hashlib.sha256(data).hexdigest() != record.get("sha256"):
            raise ArtifactError(
                f"artifact {directory}: {name} does not match its SHA-256 in the manifest; "
                "the file was modified or corrupted - export it again."
            )
        if name == WEIGHTS_FILE:
            weights = data
    return weights


def check_listing(where: str, stored: Mapping[str, Tensor], listed: Mapping[str, Any]) -> None:
    found = {
        n: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        for n, t in stored.items()
    }
    if found != dict(listed):
        differing = sorted(set(found) ^ set(listed)) or sorted(
            n for n in found if found[n] != listed[n]
        )
        raise ArtifactError(
            f"{where}: {WEIGHTS_FILE} does not hold the tensors the manifest lists (first "
            f"differences: {differing[:3]}); export the artifact again."
        )


def check_json(what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ArtifactError(
            f"`{what}` must be JSON data (numbers, strings, lists, dicts; no NaN), "
            f"but {error}; convert or drop those entries."
        ) from None


def check_reference(reference: str) -> None:
    if not isinstance(reference, str) or not REFERENCE_PATTERN.match(reference):
        raise ArtifactError(
            f"factory reference {reference!r} must look like 'package.module:Callable'; "
            "fix `teacher_factory` (or the artifact's manifest)."
        )
