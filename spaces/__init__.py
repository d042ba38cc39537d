"""The joint compression search space (installed as ``gansearch.spaces``).

``SpaceConfig`` (the study's ``space:`` section) plus the teacher give a
:class:`~gansearch.spaces.joint.JointSpace`, whose genes strategies search and whose
``decode`` yields compression plans. Exports are imported lazily, so importing this
package (or ``gansearch.spaces.config``) stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Choice": "genes",
    "Gene": "genes",
    "GeneSpace": "genes",
    "Mask": "genes",
    "LowRankSpace": "config",
    "OfaSpace": "config",
    "PruneSpace": "config",
    "SpaceConfig": "config",
    "parse_space_config": "config",
    "JointSpace": "joint",
    "ParamsNotInSpaceError": "joint",
    "PlanNotInSpaceError": "joint",
    "reference_params": "joint",
    "reference_plans": "joint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
