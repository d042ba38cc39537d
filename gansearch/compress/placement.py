"""Where export writes: an artifact folder never loses a file gansearch did not write.

The rule (:func:`check_target`): a missing or empty folder is written; a folder that is
exactly a previous artifact (a valid ``manifest.json`` and nothing but the artifact's own
regular files, :data:`~gansearch.compress.manifest.ARTIFACT_FILES`) is replaced; anything
else is refused unless ``force`` is given. Even then only the artifact's own files are
replaced, and a non-regular entry under one of their names (a folder, a symlink) is always
refused. :func:`place` moves the finished files from a staging folder next to the target
one by one with ``os.replace`` (each file atomic), the manifest last, so a reader sees the
old artifact, or files that fail the old manifest's hashes, never a mixture that loads.
"""

from __future__ import annotations

import os
from pathlib import Path

from gansearch.compress.manifest import (
    ARTIFACT_FILES,
    MANIFEST_FILE,
    ArtifactError,
    brief,
    is_artifact,
)


def check_target(target: Path, *, force: bool) -> None:
    """Refuse a ``target`` that export may not write into (see the module docs).

    Raises:
        ArtifactError: for a target that is a file, holds a non-regular entry named like an
            artifact file, or (without ``force``) is neither empty nor a previous artifact.
    """
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise ArtifactError(
            f"refusing to overwrite {target}: it is an existing file, not a folder; choose "
            "another path or remove it first."
        )
    try:
        entries = {entry.name: entry for entry in os.scandir(target)}
    except OSError as error:
        raise ArtifactError(
            f"cannot list {target} ({error.strerror}); check its permissions or choose "
            "another path."
        ) from None
    blocked = sorted(
        name
        for name, entry in entries.items()
        if name in ARTIFACT_FILES and not entry.is_file(follow_symlinks=False)
    )
    if blocked:
        raise ArtifactError(
            f"refusing to write into {target}: {blocked[0]} there is not a regular file "
            "(a folder or a symlink), and export replaces only its own files; move it away or "
            "choose another path."
        )
    if force or not entries or _is_previous_artifact(target):
        return
    others = sorted(name for name in entries if name not in ARTIFACT_FILES)
    what = (
        f"holds files export did not write: {brief(others[:3])}"
        if others
        else f"has no valid {MANIFEST_FILE}"
    )
    raise ArtifactError(
        f"refusing to write into {target}: it is not empty and not a previous gansearch "
        f"artifact (it {what}); choose another path, or pass force=True (`--force`) to "
        "replace only the artifact's own files there."
    )


def _is_previous_artifact(target: Path) -> bool:
    entries = list(os.scandir(target))
    return all(
        e.name in ARTIFACT_FILES and e.is_file(follow_symlinks=False) for e in entries
    ) and is_artifact(target)


def place(staging: Path, target: Path) -> None:
    """Move the files of ``staging`` into ``target`` (created if missing), the manifest last.

    In a folder that is still exactly a previous artifact, that artifact's other files
    (e.g. an old ``samples.png``) are removed, as they would no longer match; nothing
    else is ever removed.
    """
    written = sorted(os.listdir(staging), key=lambda name: name == MANIFEST_FILE)
    if not os.path.lexists(target):
        os.replace(staging, target)
        return
    stale = []
    if _is_previous_artifact(target):
        stale = [n for n in os.listdir(target) if n in ARTIFACT_FILES and n not in written]
    for name in written:
        os.replace(staging / name, target / name)
    for name in stale:
        (target / name).unlink(missing_ok=True)
