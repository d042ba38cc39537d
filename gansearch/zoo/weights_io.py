"""Committed weights of bundled benchmarks and the manifest that says how to remake them."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch

from gansearch.checkpoints import save_weights
from gansearch.files import write_json_atomic

WEIGHTS_ROOT = Path(__file__).parent / "weights"


def weights_dir(benchmark: str, override: Path | None = None) -> Path:
    return override if override is not None else WEIGHTS_ROOT / benchmark


def update_manifest(directory: Path, entry: str, record: dict) -> None:
    """Merge ``record`` under ``entry`` in ``directory/manifest.json`` (atomic write)."""
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest[entry] = record
    write_json_atomic(path, manifest, indent=2)


def read_manifest(directory: Path) -> dict:
    path = directory / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_trained(
    directory: Path,
    entry: str,
    command: str,
    recipe: object,
    models: dict[str, torch.nn.Module],
    metrics: dict[str, float] | None = None,
) -> None:
    """Save trained networks as safetensors and record how to reproduce them."""
    hashes = {
        name: save_weights(model, directory / f"{name}.safetensors")
        for name, model in models.items()
    }
    update_manifest(
        directory,
        entry,
        {
            "command": command,
            "recipe": asdict(recipe),  # type: ignore[call-overload]
            "sha256": hashes,
            "metrics": metrics or {},
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    )
