"""gansearch: joint multi-objective search for compressed GAN generators.

``gansearch.export(compressed, path)`` and ``gansearch.load(path)`` (artifacts, see
:mod:`gansearch.compress.artifact`) are resolved lazily, so ``import gansearch`` stays
free of torch. ``load`` runs no code the caller did not choose: an artifact of a zoo
model loads as is; one naming your own factory needs ``trust=["pkg.mod:Gen"]`` or
``factory=`` (:mod:`gansearch.compress.trust`).
"""

from __future__ import annotations

from gansearch.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {"export": "gansearch.compress.artifact", "load": "gansearch.compress.artifact"}
__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
