"""Export a compressed generator as a self-describing artifact, and load it back.

An artifact is a directory (written atomically, never half-present at its path):

* ``weights.safetensors`` - exactly :func:`~gansearch.compress.serialize.encoded_state`:
  bit-packed codes (an int4 weight takes half a byte), codebook indices and centroids,
  low-rank factors, scales, biases and norm tensors in the plan's ``norm_dtype``,
  activation ranges. Its payload size is
  :meth:`~gansearch.compress.apply.CompressedGenerator.stored_nbytes`.
* ``model.onnx`` - the generator's deployment form as a plain float graph
  (:func:`~gansearch.compress.deploy.deployment_copy`: weight encodings baked into
  ordinary weights, BatchNorm folded into convolutions; activation quantisers kept as
  round/clamp ops), legacy TorchScript-based exporter, opset 17, dynamic batch axis.
* ``manifest.json`` - everything needed to rebuild the generator without pickle:

  .. code-block:: text

      format            "gansearch-artifact"
      format_version    1
      gansearch_version the writer's version
      factory           {"reference": "package.module:Callable", "kwargs": {...}}
      input             {"shape": [1, ...], "dtype": "float32"}   (one sample)
      structure         GeneratorStructure.to_dict() of the teacher
      plan              CompressionPlan.to_dict()
      encoding          encoding_manifest() minus its plan: per-layer spec / shape /
                        channel axis, factorised layers, activation quantisers, and
                        the name, dtype and shape of every stored tensor
      stored_nbytes     predicted payload bytes of weights.safetensors
      metrics           the caller's metrics (JSON numbers / strings), or {}
      onnx              {"file", "opset", "input_name", "output_name"}
      files             {file name: {"sha256", "bytes"}} for the weights and ONNX files
      manifest_sha256   SHA-256 of the canonical JSON of every other manifest key

:func:`load` checks the manifest hash and every file hash before reading anything, so a
changed byte, a truncated file, a missing file or an edited manifest is refused with an
:class:`ArtifactError`. The hashes detect corruption and accidental edits; they are not a
signature (whoever can write the files can recompute them).

Rebuilding (no pickle; ``torch.load`` is never used): the teacher skeleton is built by
importing the manifest's factory reference and calling it with its kwargs - **loading an
artifact imports the module named there**, like running any model code, so load only
artifacts you trust as you would trust their code. The plan is then applied to the
skeleton with :func:`~gansearch.compress.apply.apply_plan` (same pruning, factorisation,
encodings and activation quantisers, so the module tree is identical; the skeleton's
random weights are fitted and then overwritten), and the stored state is written in:
each encoded weight is decoded with :func:`~gansearch.compress.encodings.decode_weight`
into the parametrisation's ``original``, and the parametrisation's own state is taken
from the payload (``scale`` / ``zero`` of int2..int8, centroids and assignment of a
codebook), never refitted. Re-encoding the loaded module reproduces the stored payload.

Length (about 410 lines): :func:`export` and :func:`load` are each other's inverse and
share the checks that keep them so; the manifest and hashes live in
:mod:`gansearch.compress.manifest`, the stored tensors in :mod:`gansearch.compress.serialize`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gansearch.compress.apply import CompressedGenerator, apply_plan
from gansearch.compress.deploy import deployment_copy
from gansearch.compress.groups import describe
from gansearch.compress.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HASH_KEY,
    MANIFEST_FILE,
    ONNX_FILE,
    REFERENCE_PATTERN,
    WEIGHTS_FILE,
    ArtifactError,
    check_json,
    check_listing,
    check_reference,
    file_record,
    is_artifact,
    manifest_digest,
    read_manifest,
    verified_files,
)
from gansearch.compress.plan import CompressionPlan, validate
from gansearch.compress.serialize import (
    EncodedStateError,
    encoded_state,
    encoding_manifest,
    restore_encoded_state,
)
from gansearch.compress.structure import GeneratorStructure
from gansearch.errors import FactoryError, GansearchError
from gansearch.factories import call_factory
from gansearch.files import write_atomic

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ONNX_FILE",
    "WEIGHTS_FILE",
    "ArtifactError",
    "export",
    "load",
    "read_manifest",
]

ONNX_OPSET = 17
ONNX_INPUT_NAME = "input"
ONNX_OUTPUT_NAME = "output"
_REBUILD_SEED = 0


def export(
    compressed: CompressedGenerator,
    path: str | Path,
    *,
    metrics: Mapping[str, Any] | None = None,
    example_input: Tensor | None = None,
    teacher_factory: str | None = None,
    teacher_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``compressed`` as an artifact directory at ``path`` (atomically).

    Args:
        compressed: The result of :func:`~gansearch.compress.apply.apply_plan`.
        path: Target directory. An existing artifact (or empty directory) there is
            replaced; anything else is refused.
        metrics: JSON-able scores to record (e.g. ``{"fid": 12.3}``); NaN is refused.
        example_input: A batch the generator accepts (one tensor). Defaults to one
            standard-normal sample of ``module.latent_shape`` when the module has it.
        teacher_factory: ``"package.module:Callable"`` building the unpruned teacher;
            defaults to the module's own class, called without arguments.
        teacher_kwargs: JSON-able keyword arguments of ``teacher_factory``.

    Returns:
        The artifact path.

    Raises:
        ArtifactError: for a target that is not an artifact, an example input that is
            missing or not a tensor, a factory that does not rebuild the teacher's
            structure, non-JSON metrics or kwargs, or a failed ONNX export.
    """
    if not isinstance(compressed, CompressedGenerator):
        raise ArtifactError(
            f"export needs a CompressedGenerator (from apply_plan), but got "
            f"{type(compressed).__name__}; compress the teacher with apply_plan first."
        )
    target = Path(path)
    _check_target(target)
    example = _example_input(compressed.module, example_input)
    reference = teacher_factory or _default_reference(compressed.module)
    kwargs = dict(teacher_kwargs or {})
    check_reference(reference)
    _check_factory_rebuilds(reference, kwargs, compressed.structure, example)

    state = {name: t.detach().contiguous().clone() for name, t in encoded_state(compressed).items()}
    encoding = {k: v for k, v in encoding_manifest(compressed).items() if k != "plan"}
    body: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "gansearch_version": _gansearch_version(),
        "factory": {"reference": reference, "kwargs": kwargs},
        "input": {"shape": [1, *example.shape[1:]], "dtype": str(example.dtype).split(".")[-1]},
        "structure": compressed.structure.to_dict(),
        "plan": compressed.plan.to_dict(),
        "encoding": encoding,
        "stored_nbytes": compressed.stored_nbytes(),
        "metrics": dict(metrics or {}),
        "onnx": {
            "file": ONNX_FILE,
            "opset": ONNX_OPSET,
            "input_name": ONNX_INPUT_NAME,
            "output_name": ONNX_OUTPUT_NAME,
        },
    }
    check_json("metrics", body["metrics"])
    check_json("teacher_kwargs", kwargs)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        from safetensors.torch import save_file

        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
        _export_onnx(compressed.module, example[:1], staging / ONNX_FILE)
        body["files"] = {name: file_record(staging / name) for name in (WEIGHTS_FILE, ONNX_FILE)}
        manifest = {**body, HASH_KEY: manifest_digest(body)}
        write_atomic(staging / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _swap_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    if target.is_dir() and (not any(target.iterdir()) or is_artifact(target)):
        return
    kind = "directory" if target.is_dir() else "file"
    raise ArtifactError(
        f"refusing to overwrite {target}: it is an existing {kind} that is not a gansearch "
        "artifact; choose another path or remove it first."
    )


def _example_input(module: nn.Module, example_input: Tensor | None) -> Tensor:
    if example_input is None:
        latent_shape = getattr(module, "latent_shape", None)
        if latent_shape is None:
            raise ArtifactError(
                f"cannot tell the input shape of {type(module).__name__}; pass "
                "`example_input=` (a batch the generator accepts) to export."
            )
        generator = torch.Generator().manual_seed(_REBUILD_SEED)
        return torch.randn((1, *latent_shape), generator=generator)
    if not isinstance(example_input, Tensor) or example_input.dim() < 1:
        raise ArtifactError(
            f"`example_input` must be one batched tensor, but got {type(example_input).__name__}; "
            "artifacts support generators with a single tensor input."
        )
    return example_input.detach()


def _default_reference(module: nn.Module) -> str:
    cls = type(module)
    reference = f"{cls.__module__}:{cls.__qualname__}"
    if not REFERENCE_PATTERN.match(reference) or cls.__module__ == "__main__":
        raise ArtifactError(
            f"cannot rebuild {cls.__qualname__} from an import reference ({reference!r} is not "
            "importable); pass `teacher_factory='package.module:Callable'` to export."
        )
    return reference


def _check_factory_rebuilds(
    reference: str, kwargs: dict[str, Any], structure: GeneratorStructure, example: Tensor
) -> None:
    skeleton = _build_skeleton(reference, kwargs)
    try:
        rebuilt = describe(skeleton, example)
    except GansearchError as error:
        raise ArtifactError(
            f"factory {reference!r} with kwargs {kwargs} does not accept the example input: "
            f"{error}; pass the teacher's `teacher_factory` / `teacher_kwargs`."
        ) from None
    if _structure_key(rebuilt) != _structure_key(structure):
        raise ArtifactError(
            f"factory {reference!r} with kwargs {kwargs} builds a generator whose structure "
            "differs from the compressed teacher's; pass the teacher's `teacher_factory` / "
            "`teacher_kwargs` to export."
        )


def _structure_key(structure: GeneratorStructure) -> str:
    """The structure as JSON, without the free-text reasons of excluded groups.

    (Those reasons quote error messages that depend on the example's batch size.)
    """
    data = structure.to_dict()
    data["excluded_groups"] = [
        {"name": g["name"], "num_channels": g["num_channels"]} for g in data["excluded_groups"]
    ]
    return json.dumps(data, sort_keys=True)


def _export_onnx(module: nn.Module, example: Tensor, destination: Path) -> None:
    """Write the deployment form (weights baked, BatchNorm folded) as a float ONNX graph."""
    baked = deployment_copy(module)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                baked,
                (example,),
                str(destination),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=[ONNX_INPUT_NAME],
                output_names=[ONNX_OUTPUT_NAME],
                dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
            )
    except Exception as error:  # noqa: BLE001 - any exporter failure is reported in one line
        raise ArtifactError(
            f"ONNX export of {type(module).__name__} failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); the generator's forward "
            "must be traceable by torch.onnx (legacy exporter, opset 17)."
        ) from None


def _swap_into_place(staging: Path, target: Path) -> None:
    """Move the finished ``staging`` directory to ``target`` (replacing an old artifact)."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    os.rmdir(retired)
    os.replace(target, retired)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(retired, target)  # put the previous artifact back
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _gansearch_version() -> str:
    from gansearch import __version__

    return __version__


def load(path: str | Path) -> CompressedGenerator:
    """Rebuild the compressed generator of an artifact (no pickle), in eval mode.

    Loading imports the module named by the manifest's factory reference (see the
    module docs); everything else is JSON and safetensors.

    Args:
        path: The artifact directory written by :func:`export`.

    Returns:
        A :class:`~gansearch.compress.apply.CompressedGenerator` (an ``nn.Module``)
        whose outputs equal those of the exported one.

    Raises:
        ArtifactError: for a missing, truncated, tampered or inconsistent artifact, or a
            factory that cannot be imported or does not rebuild the recorded teacher.
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    weights_bytes = verified_files(directory, manifest)
    where = f"artifact {directory}"
    try:
        plan = CompressionPlan.from_dict(manifest["plan"])
        structure = GeneratorStructure.from_dict(manifest["structure"])
        validate(plan, structure)
        factory = manifest["factory"]
        reference, kwargs = factory["reference"], dict(factory["kwargs"])
        input_shape = tuple(int(s) for s in manifest["input"]["shape"])
        input_dtype = getattr(torch, manifest["input"]["dtype"])
        encoding = manifest["encoding"]
        layer_specs: dict[str, Any] = encoding["weights"]
        listed: dict[str, Any] = encoding["tensors"]
    except (GansearchError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ArtifactError(
            f"{where}: the manifest is inconsistent ({type(error).__name__}: {error}); "
            "export the artifact again."
        ) from None
    check_reference(reference)

    from safetensors.torch import load as load_safetensors

    try:
        stored = load_safetensors(weights_bytes)
    except Exception as error:  # noqa: BLE001 - any parse failure is a broken file
        raise ArtifactError(
            f"{where}: {WEIGHTS_FILE} cannot be read ({error}); export the artifact again."
        ) from None
    check_listing(where, stored, listed)

    skeleton = _build_skeleton(reference, kwargs)
    with torch.no_grad():  # values are overwritten; zeros make the throw-away fits cheap
        for parameter in skeleton.parameters():
            parameter.zero_()
    generator = torch.Generator().manual_seed(_REBUILD_SEED)
    example = torch.randn(input_shape, generator=generator).to(input_dtype)
    try:
        rebuilt = apply_plan(skeleton, plan, example, structure=structure)
    except Exception as error:  # noqa: BLE001 - the factory does not fit the structure
        raise ArtifactError(
            f"{where}: the plan cannot be applied to {reference}(**{kwargs}) "
            f"({type(error).__name__}: {error}); the factory no longer builds the exported "
            "teacher - use the gansearch / model code version that exported it."
        ) from None
    expected = {n: (t.dtype, tuple(t.shape)) for n, t in encoded_state(rebuilt).items()}
    found = {n: (t.dtype, tuple(t.shape)) for n, t in stored.items()}
    if expected != found:
        differing = sorted(set(expected) ^ set(found)) or sorted(
            n for n in expected if expected[n] != found[n]
        )
        raise ArtifactError(
            f"{where}: the stored tensors do not fit the rebuilt generator (first differences: "
            f"{differing[:3]}); the factory code changed since export - use the matching "
            "model code version or export again."
        )
    try:
        restore_encoded_state(rebuilt.module, stored, layer_specs)
    except EncodedStateError as error:
        raise ArtifactError(f"{where}: {error}; export the artifact again.") from None
    return rebuilt.eval()


def _build_skeleton(reference: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Import ``package.module:Callable`` (only that module) and call it with ``kwargs``."""
    try:
        model = call_factory(reference, "teacher", kwargs)
    except FactoryError as error:
        raise ArtifactError(str(error)) from None
    if not isinstance(model, nn.Module):
        raise ArtifactError(
            f"the teacher factory {reference!r} returned {type(model).__name__}, not a "
            "torch.nn.Module; point it at the generator class or a function returning one."
        )
    return model.eval()
