"""The artifact manifest: format constants, hashes, and checked reading.

An artifact's ``manifest.json`` records the factory that rebuilds the teacher, the
structure, the plan, the encoding of every stored tensor and the SHA-256 and size of every
file, plus ``manifest_sha256`` over the canonical JSON of everything else. The hashes
detect corruption and accidental edits, **not forgery**: they carry no key, so whoever can
write the files can recompute them. Which code loading may run is decided by the caller's
factory allow-list (:mod:`gansearch.compress.trust`), never by the artifact.

Everything in a manifest is data from the artifact, so reading it is defensive: the file
must be a regular file (not a symlink) of at most :data:`MAX_MANIFEST_BYTES`; NaN,
Infinity, out-of-range numbers and nesting too deep are refused; every key the loader uses
is type-checked (:func:`check_manifest`); dtypes come from a fixed list and input shapes
are capped. Every file the manifest lists must be a plain name of the artifact format
(:data:`LISTED_FILES`) inside the artifact folder; it is ``lstat``-ed (a symlink is
refused without following it) and its size is checked before it is read, so an error never
reveals anything about a file outside the artifact. See :mod:`gansearch.compress.artifact`
for the layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gansearch.errors import GansearchError

FORMAT_NAME = "gansearch-artifact"
FORMAT_VERSION = 2
"""Version 2 records every generator input (``inputs``); version 1 (one tensor input,
``input``) is still read."""
READABLE_VERSIONS = (1, 2)
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
HASH_KEY = "manifest_sha256"
SAMPLES_FILE = "samples.png"
LISTED_FILES = (WEIGHTS_FILE, ONNX_FILE)
"""The only names a format-1 manifest's ``files`` may list."""
ARTIFACT_FILES = (MANIFEST_FILE, WEIGHTS_FILE, ONNX_FILE, SAMPLES_FILE)
"""Every file gansearch writes into an artifact folder (``samples.png`` by ``gansearch
export`` only); export replaces these and nothing else."""
REFERENCE_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
MAX_MANIFEST_BYTES = 16 << 20
MAX_FILE_BYTES = 4 << 30
MAX_INPUT_ELEMENTS = 1 << 24
MAX_INPUTS = 16
INPUT_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
}
"""The input dtypes an artifact may record (a fixed list: never ``getattr(torch, name)``)."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArtifactError(GansearchError):
    """An artifact that cannot be written or read: the message names the problem and fix."""


def brief(value: Any, limit: int = 120) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters (artifact data in messages)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(error: BaseException) -> str:
    """The first line of an error's message, cut short (for one-line reports)."""
    lines = str(error).strip().splitlines()
    text = repr(lines[0])[1:-1] if lines else ""  # escapes control characters
    return text if len(text) <= 200 else text[:197] + "..."


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and verify an artifact's manifest (format, version, types, its own hash).

    Raises:
        ArtifactError: for a missing directory or manifest, a manifest that is a symlink,
            too large, not strict JSON or of the wrong shape, another format or version,
            or a manifest whose content no longer matches its hash.
    """
    directory = Path(path)
    where = f"artifact {directory}"
    if not directory.is_dir():
        raise ArtifactError(
            f"artifact not found: {directory} is not a directory; check the path "
            "(artifacts are written by gansearch.export)."
        )
    try:
        data = _read_listed(directory, MANIFEST_FILE, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ArtifactError(
            f"{where} has no {MANIFEST_FILE}; it is incomplete or not an artifact - export "
            "it again."
        ) from None
    except OSError as error:
        raise ArtifactError(
            f"{where}: {MANIFEST_FILE} cannot be read ({error.strerror}); check its permissions."
        ) from None
    manifest = _parse(where, data)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(
            f"{where}: {MANIFEST_FILE} is not a {FORMAT_NAME} manifest; check the path."
        )
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ArtifactError(
            f"{where}: `format_version` must be one of {list(READABLE_VERSIONS)}, but got "
            f"{brief(version)}; load it with the gansearch version that wrote it."
        )
    try:
        digest = manifest_digest(manifest)
    except (ValueError, TypeError, RecursionError):
        digest = None
    if manifest.get(HASH_KEY) != digest:
        raise ArtifactError(
            f"{where}: {MANIFEST_FILE} does not match its recorded SHA-256 ({HASH_KEY}); it "
            "was edited or corrupted - export the artifact again."
        )
    check_manifest(where, manifest)
    return manifest


def _parse(where: str, data: bytes) -> Any:
    try:
        return json.loads(
            data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float
        )
    except RecursionError:
        reason = "it is nested too deeply"
    except (UnicodeDecodeError, ValueError) as error:
        reason = one_line(error) or type(error).__name__
    raise ArtifactError(
        f"{where}: {MANIFEST_FILE} is not valid JSON ({reason}); the file is truncated or "
        "edited - export it again."
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def is_artifact(directory: Path) -> bool:
    """Whether ``directory`` holds a regular ``manifest.json`` of the artifact format."""
    try:
        manifest = _parse("", _read_listed(directory, MANIFEST_FILE, MAX_MANIFEST_BYTES))
    except (OSError, ArtifactError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME


def manifest_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of every key but :data:`HASH_KEY`."""
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != HASH_KEY}, sort_keys=True, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_record(file: Path) -> dict[str, Any]:
    data = file.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def check_manifest(where: str, manifest: Mapping[str, Any]) -> None:
    """Check the type of every manifest entry the loader reads (one line per problem)."""
    for key in ("factory", "structure", "plan", "encoding", "metrics", "onnx", "files"):
        _expect(where, key, manifest.get(key), dict)
    factory = manifest["factory"]
    _expect(where, "factory.reference", factory.get("reference"), str)
    _expect(where, "factory.kwargs", factory.get("kwargs"), dict)
    manifest_inputs(where, manifest)
    _expect(where, "stored_nbytes", manifest.get("stored_nbytes"), int)
    encoding = manifest["encoding"]
    _expect(where, "encoding.weights", encoding.get("weights"), dict)
    tensors = _expect(where, "encoding.tensors", encoding.get("tensors"), dict)
    for name, entry in tensors.items():
        _expect(where, f"encoding.tensors[{brief(name)}]", entry, dict)
        _expect(where, f"encoding.tensors[{brief(name)}].dtype", entry.get("dtype"), str)
        _int_list(where, f"encoding.tensors[{brief(name)}].shape", entry.get("shape"), minimum=0)
    files = manifest["files"]
    for name, record in files.items():
        check_file_name(where, name)
        _expect(where, f"files[{name!r}]", record, dict)
        if type(record.get("bytes")) is not int or not 0 <= record["bytes"] <= MAX_FILE_BYTES:
            raise ArtifactError(
                f"{where}: `files[{name!r}].bytes` must be an integer in 0..{MAX_FILE_BYTES}, "
                f"but got {brief(record.get('bytes'))}; the manifest is corrupt - export it again."
            )
        if not isinstance(record.get("sha256"), str) or not _SHA256.match(record["sha256"]):
            raise ArtifactError(
                f"{where}: `files[{name!r}].sha256` must be 64 hex digits, but got "
                f"{brief(record.get('sha256'))}; the manifest is corrupt - export it again."
            )
    if WEIGHTS_FILE not in files:
        raise ArtifactError(f"{where}: the manifest lists no {WEIGHTS_FILE}; export it again.")
    onnx_file = _expect(where, "onnx.file", manifest["onnx"].get("file"), str)
    if onnx_file not in files:
        raise ArtifactError(
            f"{where}: `onnx.file` {brief(onnx_file)} is not a file the manifest lists; the "
            "manifest is corrupt - export it again."
        )


def manifest_inputs(where: str, manifest: Mapping[str, Any]) -> list[tuple[str, list[int], str]]:
    """``(name, shape of one sample batch, dtype)`` of each generator input, checked.

    Version 2 lists them under ``inputs``; version 1 had one ``input`` named ``"input"``.
    """
    if manifest.get("format_version") == 1:
        entry = _expect(where, "input", manifest.get("input"), dict)
        records = [{"name": "input", **entry}]
    else:
        records = _expect(where, "inputs", manifest.get("inputs"), list)
        if not 1 <= len(records) <= MAX_INPUTS:
            raise ArtifactError(
                f"{where}: `inputs` must list 1..{MAX_INPUTS} inputs, but got {len(records)}; "
                "the manifest is corrupt - export it again."
            )
    inputs = []
    for index, record in enumerate(records):
        key = f"inputs[{index}]"
        _expect(where, key, record, dict)
        name = _expect(where, f"{key}.name", record.get("name"), str)
        shape = _int_list(where, f"{key}.shape", record.get("shape"), minimum=1)
        if not 1 <= len(shape) <= 8 or math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise ArtifactError(
                f"{where}: `{key}.shape` must have 1..8 axes and at most {MAX_INPUT_ELEMENTS} "
                f"elements, but got {brief(shape)}; the manifest is corrupt - export it again."
            )
        if record.get("dtype") not in INPUT_DTYPES:
            raise ArtifactError(
                f"{where}: `{key}.dtype` must be one of {', '.join(INPUT_DTYPES)}, but got "
                f"{brief(record.get('dtype'))}; the manifest is corrupt - export it again."
            )
        inputs.append((name, shape, record["dtype"]))
    return inputs


def check_file_name(where: str, name: Any) -> None:
    """A listed file must be one of :data:`LISTED_FILES`: a plain name, no path parts."""
    if name not in LISTED_FILES:
        raise ArtifactError(
            f"{where}: the manifest lists the file {brief(name)}, but an artifact holds only "
            f"{', '.join(LISTED_FILES)} (plain names inside its folder); the manifest is "
            "corrupt or forged - export it again."
        )


def _expect(where: str, key: str, value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ArtifactError(
            f"{where}: manifest entry `{key}` must be {kind.__name__}, but got "
            f"{type(value).__name__}; the manifest is corrupt - export it again."
        )
    return value


def _int_list(where: str, key: str, value: Any, *, minimum: int) -> list[int]:
    if not isinstance(value, list) or not all(
        type(v) is int and minimum <= v <= MAX_FILE_BYTES for v in value
    ):
        raise ArtifactError(
            f"{where}: manifest entry `{key}` must be a list of integers >= {minimum}, but got "
            f"{brief(value)}; the manifest is corrupt - export it again."
        )
    return value


def _read_listed(directory: Path, name: str, cap: int, expected: int | None = None) -> bytes:
    """Read ``directory/name``: a regular file (never a symlink) whose size is checked first.

    Raises:
        FileNotFoundError: when there is no such entry.
        ArtifactError: for a symlink, a non-regular file, or a size over ``cap`` or other
            than ``expected``.
    """
    where = f"artifact {directory}"
    path = directory / name
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise ArtifactError(
            f"{where}: {name} is {kind}; an artifact holds only its own regular files - "
            "export it again."
        )
    size = info.st_size
    if size > cap or (expected is not None and size != expected):
        recorded = f"the manifest records {expected}" if expected is not None else f"at most {cap}"
        raise ArtifactError(
            f"{where}: {name} has {size} bytes but {recorded}; the file is truncated or "
            "replaced - export it again."
        )
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(size + 1)
    if len(data) != size:
        raise ArtifactError(
            f"{where}: {name} changed size while it was read; export the artifact again."
        )
    return data


def verified_files(directory: Path, manifest: Mapping[str, Any]) -> bytes:
    """Check every listed file's size and SHA-256; return the weights file's bytes.

    ``manifest`` must have passed :func:`check_manifest` (plain, known file names).
    """
    where = f"artifact {directory}"
    weights = b""
    for name, record in sorted(manifest["files"].items()):
        check_file_name(where, name)
        try:
            data = _read_listed(directory, name, MAX_FILE_BYTES, record["bytes"])
        except FileNotFoundError:
            raise ArtifactError(
                f"{where} is missing {name}; the artifact is incomplete - export it again."
            ) from None
        except OSError as error:
            raise ArtifactError(
                f"{where}: {name} cannot be read ({error.strerror}); check the file's "
                "permissions or export the artifact again."
            ) from None
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise ArtifactError(
                f"{where}: {name} does not match its SHA-256 in the manifest; the file was "
                "modified or corrupted - export it again."
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
            f"differences: {brief(differing[:3])}); export the artifact again."
        )


def check_json(what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError) as error:
        raise ArtifactError(
            f"`{what}` must be JSON data (numbers, strings, lists, dicts; no NaN), "
            f"but {error}; convert or drop those entries."
        ) from None


def check_reference(reference: Any) -> None:
    if not isinstance(reference, str) or not REFERENCE_PATTERN.match(reference):
        raise ArtifactError(
            f"factory reference {brief(reference)} must look like 'package.module:Callable'; "
            "fix `teacher_factory` (or the artifact's manifest)."
        )
