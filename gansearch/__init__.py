"""gansearch: joint multi-objective search for compressed GAN generators.

``gansearch.export(compressed, path)`` and ``gansearch.load(path)`` (artifacts, see
:mod:`gansearch.compress.export`) are resolved lazily, so ``import gansearch`` stays
free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {"export": "gansearch.compress.export", "load": "gansearch.compress.export"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
