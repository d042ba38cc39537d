"""Compression of generators: plans, structure, pruning, low-rank, encodings, apply.

The flow is ``describe(teacher) -> GeneratorStructure``; a strategy builds a
``CompressionPlan`` (plain data); ``apply_plan(teacher, plan, example_input)`` returns a
``CompressedGenerator`` whose ``stored_nbytes()`` is exact.

Submodules are imported lazily so that ``import gansearch.compress.plan`` stays free of
torch.
"""

from __future__ import annotations

from gansearch.lazy import lazy_exports

_EXPORTS = {
    "PLAN_VERSION": "plan",
    "CompressionPlan": "plan",
    "LayerPlan": "plan",
    "InvalidPlanError": "plan",
    "PlanNotSupportedError": "plan",
    "validate": "plan",
    "GeneratorStructure": "structure",
    "PrunableGroup": "structure",
    "GroupMember": "structure",
    "ExcludedGroup": "structure",
    "LayerInfo": "structure",
    "NormInfo": "structure",
    "StructureError": "structure",
    "describe": "groups",
    "prune_channels": "prune",
    "predicted_params": "prune",
    "channel_importance": "importance",
    "channel_order": "importance",
    "magnitude_masks": "importance",
    "DistillLosses": "recipes",
    "DistillRecipe": "recipes",
    "SupernetRecipe": "recipes",
    "factorize": "lowrank",
    "full_rank": "lowrank",
    "factor_names": "lowrank",
    "LowRankError": "lowrank",
    "apply_plan": "apply",
    "apply_transform": "apply",
    "register_transform": "apply",
    "CompressedGenerator": "apply",
    "PruneConfig": "apply",
    "LowRankConfig": "apply",
    "WeightEncodingConfig": "apply",
    "ActivationQuantConfig": "apply",
    "UnknownTransformError": "apply",
    "encoded_state": "serialize",
    "encoding_manifest": "serialize",
    "deployment_copy": "deploy",
    "dequantized_copy": "deploy",
    "export": "artifact",
    "load": "artifact",
    "ArtifactError": "manifest",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
