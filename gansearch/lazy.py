"""Lazy package exports (PEP 562), so importing a package never pulls in torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` from ``exports[name]`` on first use.

    ``exports`` maps an attribute to the module defining it: absolute
    (``"gansearch.compress.artifact"``) or relative to ``package`` (``"plan"``).
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = module if module.startswith("gansearch.") else f"{package}.{module}"
        return getattr(importlib.import_module(target), name)

    return __getattr__
