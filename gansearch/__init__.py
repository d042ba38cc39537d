"""gansearch: joint multi-objective search for compressed GAN generators.

``gansearch.export(compressed, path)`` and ``gansearch.load(path)`` (artifacts, see
:mod:`gansearch.compress.artifact`) are resolved lazily, so ``import gansearch`` stays
free of torch.
"""

from __future__ import annotations

from gansearch.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {"export": "gansearch.compress.artifact", "load": "gansearch.compress.artifact"}
__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
