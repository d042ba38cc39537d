"""The joint compression search space (installed as ``gansearch.spaces``).

``SpaceConfig`` (the study's ``space:`` section) plus the teacher give a
:class:`~gansearch.spaces.joint.JointSpace`, whose genes strategies search and whose
``decode`` yields compression plans. Exports are imported lazily, so importing this
package (or ``gansearch.spaces.config``) stays free of torch.
"""

from __future__ import annotations

from gansearch.lazy import lazy_exports

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
    "reference_params": "references",
    "reference_plans": "references",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
