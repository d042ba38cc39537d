"""Atomic file writes: the one helper every writer in gansearch uses.

A reader never sees a half-written file: the content goes to a temporary file in the same
directory (so the rename stays on one file system), which then replaces the target with
``os.replace`` (atomic on POSIX and Windows). On any error, Ctrl-C included, the temporary
file is removed and the previous target, if any, is left untouched. Ray Tune's searcher
checkpoints are written the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    For writers that want a file name rather than bytes (``safetensors.torch.save_file``).

    Args:
        path: The final file; its directory is created if needed.
        mode: Permission bits of the final file (``mkstemp`` would leave 0o600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def write_json_atomic(path: str | Path, payload: Any, *, indent: int | None = None) -> None:
    """Write ``payload`` as JSON (sorted keys) to ``path`` atomically."""
    text = json.dumps(payload, sort_keys=True, indent=indent)
    write_atomic(path, text + "\n" if indent is not None else text)
