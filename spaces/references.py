"""Reference plans: the single-technique starting points a study evaluates first.

The search enqueues them (when the space can represent them) so that every study's
front holds the teacher and the field's standard baselines, and the Pareto plots mark
them by name.
"""

from __future__ import annotations

from typing import Any

from gansearch.compress.plan import CompressionPlan, LayerPlan
from gansearch.compress.structure import width_for
from gansearch.spaces.joint import JointSpace, PlanNotInSpaceError


def reference_plans(space: JointSpace) -> dict[str, CompressionPlan]:
    """Reference plans that the Pareto plot marks: single techniques, and the supernet's
    students at int4.

    ``teacher`` (identity), ``int8`` and ``int4`` (every layer's weights),
    ``codebook16`` (every layer), and ``prune50`` (every group keeps its
    ``round(C / 2)`` most important channels: L1-magnitude pruning, Li et al.,
    "Pruning Filters for Efficient ConvNets", ICLR 2017), and, when the space has OFA
    widths, ``ofa50`` / ``ofa25`` (the supernet at half / quarter width) and ``ofa50-int4`` /
    ``ofa25-int4`` (the same with int4 weights). All are valid for the
    structure, whether or not ``space`` can represent them (see :func:`reference_params`).
    """
    structure = space.structure
    identity = CompressionPlan.identity(structure)

    def uniform(spec: str) -> CompressionPlan:
        return CompressionPlan(
            masks=identity.masks,
            layers={layer.name: LayerPlan(weight=spec) for layer in structure.layers},
        )

    masks = {}
    for group in structure.groups:
        kept = set(space.channel_order[group.name][: width_for(0.5, group.num_channels)])
        masks[group.name] = tuple(c in kept for c in range(group.num_channels))
    plans = {
        "teacher": identity,
        "int8": uniform("int8"),
        "int4": uniform("int4"),
        "codebook16": uniform("codebook16"),
        "prune50": CompressionPlan(masks=masks, layers=identity.layers),
    }
    if space.config.ofa is not None:  # the supernet's uniform sub-generators (GAN Compression)
        for ratio in (0.5, 0.25):
            widths = {g.name: width_for(ratio, g.num_channels) for g in structure.groups}
            name = f"ofa{round(ratio * 100)}"
            plans[name] = CompressionPlan(widths=widths, layers=identity.layers)
            # ... and the same student with int4 weights: the joint baseline of the field's
            # anchors (a distilled narrow student, then quantised; GAN Slimming, QGAN)
            plans[f"{name}-int4"] = CompressionPlan(widths=widths, layers=uniform("int4").layers)
    return plans


def reference_params(space: JointSpace) -> dict[str, dict[str, Any]]:
    """Params of the :func:`reference_plans` that ``space`` can represent.

    References outside the space (e.g. ``int4`` when ``space.bits`` excludes 4) are left
    out; evaluate those from :func:`reference_plans` directly if they should still be
    plotted.
    """
    params = {}
    for name, plan in reference_plans(space).items():
        try:
            params[name] = space.encode(plan)
        except PlanNotInSpaceError:
            continue
    return params
