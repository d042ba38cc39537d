"""Export a compressed generator as a self-describing artifact, and load it back.

An artifact is a directory (each file written atomically, the manifest last):

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
      format_version    2 (version 1, with one ``input``, is still read)
      gansearch_version the writer's version
      factory           {"reference": "package.module:Callable", "kwargs": {...}}
      inputs            [{"name": "z", "shape": [1, ...], "dtype": "float32"}, ...]
                        the generator's positional inputs (one sample each)
      structure         GeneratorStructure.to_dict() of the teacher
      plan              CompressionPlan.to_dict()
      encoding          encoding_manifest() minus its plan: per-layer spec / shape /
                        channel axis, factorised layers, activation quantisers, and
                        the name, dtype and shape of every stored tensor
      stored_nbytes     predicted payload bytes of weights.safetensors
      metrics           the caller's metrics (JSON numbers / strings), or {}
      onnx              {"file", "opset", "input_names", "output_name"}
      files             {file name: {"sha256", "bytes"}} for the weights and ONNX files
      manifest_sha256   SHA-256 of the canonical JSON of every other manifest key

Loading is defensive, since everything in an artifact is data from whoever wrote it:

* **No code is run that the caller did not choose.** The teacher skeleton is built by the
  manifest's factory only when it is one of gansearch's own zoo generators or a reference
  the caller trusts (``gansearch.load(path, trust=["pkg.mod:Gen"])``, ``--trust-factory``);
  or the caller passes ``factory=`` and the manifest's reference is never imported. Anything
  else is refused before any import (:mod:`gansearch.compress.trust`).
* **Hashes detect corruption, not forgery.** :func:`load` checks the manifest hash and every
  file's size and hash before reading anything, so a changed byte, a truncated or missing
  file or an edited manifest is refused; but the hashes carry no key, and whoever can write
  the files can recompute them. They are no reason to trust an artifact's factory.
* **Malformed manifests and odd files give one line.** File names, sizes, types, dtypes and
  shapes are checked before use (:mod:`gansearch.compress.manifest`); any other failure
  while rebuilding from the manifest is reported as one :class:`ArtifactError` line.

Rebuilding (no pickle; ``torch.load`` is never used): the chosen factory is called with the
manifest's JSON kwargs, the plan is applied to that skeleton with
:func:`~gansearch.compress.apply.apply_plan` (the module tree is identical; the skeleton's
random weights are fitted and then overwritten), and the stored state is written in:
each encoded weight is decoded with :func:`~gansearch.compress.encodings.decode_weight`
into the parametrisation's ``original``, and the parametrisation's own state is taken
from the payload (``scale`` / ``zero`` of int2..int8, centroids and assignment of a
codebook), never refitted. Re-encoding the loaded module reproduces the stored payload.

Export never deletes a file it did not write (:mod:`gansearch.compress.placement`).

Length (about 490 lines): :func:`export` and :func:`load` are each other's inverse and
share the checks that keep them so; the manifest and hashes live in
:mod:`gansearch.compress.manifest`, the stored tensors in :mod:`gansearch.compress.serialize`,
the factory allow-list in :mod:`gansearch.compress.trust`, the target-folder rule in
:mod:`gansearch.compress.placement`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
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
    INPUT_DTYPES,
    MANIFEST_FILE,
    ONNX_FILE,
    REFERENCE_PATTERN,
    WEIGHTS_FILE,
    ArtifactError,
    brief,
    check_json,
    check_listing,
    check_reference,
    file_record,
    manifest_digest,
    manifest_inputs,
    one_line,
    read_manifest,
    verified_files,
)
from gansearch.compress.placement import check_target, place
from gansearch.compress.plan import CompressionPlan, validate
from gansearch.compress.serialize import (
    EncodedStateError,
    encoded_state,
    encoding_manifest,
    restore_encoded_state,
)
from gansearch.compress.structure import GeneratorStructure
from gansearch.compress.trust import FactoryArg, build_skeleton, skeleton_factory
from gansearch.errors import GansearchError
from gansearch.files import write_atomic

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ONNX_FILE",
    "WEIGHTS_FILE",
    "ArtifactError",
    "check_inputs",
    "export",
    "load",
    "read_manifest",
]

ONNX_OPSET = 17
ONNX_OUTPUT_NAME = "output"
_REBUILD_SEED = 0


def export(
    compressed: CompressedGenerator,
    path: str | Path,
    *,
    metrics: Mapping[str, Any] | None = None,
    example_input: Tensor | tuple[Tensor, ...] | None = None,
    input_names: Sequence[str] | None = None,
    teacher_factory: str | None = None,
    teacher_kwargs: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write ``compressed`` as an artifact directory at ``path`` (atomically).

    Args:
        compressed: The result of :func:`~gansearch.compress.apply.apply_plan`.
        path: Target directory. A missing or empty directory is written, a previous
            artifact there is replaced; anything else is refused unless ``force``.
        metrics: JSON-able scores to record (e.g. ``{"fid": 12.3}``); NaN is refused.
        example_input: A batch the generator accepts: one tensor, or a tuple of tensors
            for a generator with several inputs (e.g. ``(z, labels)``). Defaults to one
            standard-normal sample of ``module.latent_shape`` when the module has it.
        input_names: The inputs' names in the manifest and the ONNX graph; defaults to
            ``input`` (one input) or ``input0``, ``input1``, ...
        teacher_factory: ``"package.module:Callable"`` building the unpruned teacher;
            defaults to the module's own class, called without arguments.
        teacher_kwargs: JSON-able keyword arguments of ``teacher_factory``.
        force: Write into a directory that holds other files too; only the artifact's own
            files (:data:`~gansearch.compress.manifest.ARTIFACT_FILES`) are replaced.

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
    check_target(target, force=force)
    example = _example_input(compressed.module, example_input)
    names = _input_names(input_names, len(example))
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
        "inputs": [
            {"name": name, "shape": [1, *part.shape[1:]], "dtype": str(part.dtype).split(".")[-1]}
            for name, part in zip(names, example, strict=True)
        ],
        "structure": compressed.structure.to_dict(),
        "plan": compressed.plan.to_dict(),
        "encoding": encoding,
        "stored_nbytes": compressed.stored_nbytes(),
        "metrics": dict(metrics or {}),
        "onnx": {
            "file": ONNX_FILE,
            "opset": ONNX_OPSET,
            "input_names": list(names),
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
        _export_onnx(compressed.module, tuple(p[:1] for p in example), names, staging / ONNX_FILE)
        for name in (WEIGHTS_FILE, ONNX_FILE):
            (staging / name).chmod(0o644)  # as write_atomic leaves the manifest
        staging.chmod(0o755)  # mkdtemp's 0o700 would stay on a new artifact folder
        body["files"] = {name: file_record(staging / name) for name in (WEIGHTS_FILE, ONNX_FILE)}
        manifest = {**body, HASH_KEY: manifest_digest(body)}
        write_atomic(staging / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _input_names(names: Sequence[str] | None, count: int) -> tuple[str, ...]:
    if names is None:
        return ("input",) if count == 1 else tuple(f"input{i}" for i in range(count))
    names = tuple(names)
    if len(names) != count or len(set(names)) != count or ONNX_OUTPUT_NAME in names:
        raise ArtifactError(
            f"`input_names` must name each of the {count} input(s) once (not "
            f"{ONNX_OUTPUT_NAME!r}), but got {list(names)}."
        )
    return names


def _example_input(
    module: nn.Module, example_input: Tensor | tuple[Tensor, ...] | None
) -> tuple[Tensor, ...]:
    if example_input is None:
        latent_shape = getattr(module, "latent_shape", None)
        if latent_shape is None:
            raise ArtifactError(
                f"cannot tell the input shape of {type(module).__name__}; pass "
                "`example_input=` (a batch the generator accepts) to export."
            )
        generator = torch.Generator().manual_seed(_REBUILD_SEED)
        return (torch.randn((1, *latent_shape), generator=generator),)
    parts = example_input if isinstance(example_input, tuple) else (example_input,)
    if not parts or not all(isinstance(p, Tensor) and p.dim() >= 1 for p in parts):
        raise ArtifactError(
            "`example_input` must be a batched tensor or a tuple of them, but got "
            f"{type(example_input).__name__}."
        )
    if any(p.dtype not in INPUT_DTYPES.values() for p in parts):
        raise ArtifactError(
            f"`example_input` dtypes must be among {', '.join(INPUT_DTYPES)}, but got "
            f"{[str(p.dtype) for p in parts]}."
        )
    return tuple(p.detach() for p in parts)


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
    reference: str,
    kwargs: dict[str, Any],
    structure: GeneratorStructure,
    example: tuple[Tensor, ...],
) -> None:
    skeleton = build_skeleton(*skeleton_factory(reference, factory=reference), kwargs)
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


def _export_onnx(
    module: nn.Module, example: tuple[Tensor, ...], names: Sequence[str], destination: Path
) -> None:
    """Write the deployment form (weights baked, BatchNorm folded) as a float ONNX graph."""
    baked = deployment_copy(module)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                baked,
                example,
                str(destination),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=list(names),
                output_names=[ONNX_OUTPUT_NAME],
                dynamic_axes={name: {0: "batch"} for name in (*names, ONNX_OUTPUT_NAME)},
            )
    except Exception as error:  # noqa: BLE001 - any exporter failure is reported in one line
        raise ArtifactError(
            f"ONNX export of {type(module).__name__} failed ({type(error).__name__}: "
            f"{one_line(error)}); the generator's forward "
            "must be traceable by torch.onnx (legacy exporter, opset 17)."
        ) from None


def _gansearch_version() -> str:
    from gansearch import __version__

    return __version__


def check_inputs(
    path: str | Path, example: Sequence[Tensor], names: Sequence[str] | None = None
) -> None:
    """Refuse inputs (one tensor each, with ``names``) whose per-sample shapes or dtypes
    differ from those the artifact records; fed another study's inputs, its forward would
    fail deep inside the user's code. Names are not compared (format 1 said ``input``).

    Raises:
        ArtifactError: one line listing both sets of inputs.
    """
    where = f"artifact {Path(path)}"
    recorded = [(n, s[1:], d) for n, s, d in manifest_inputs(where, read_manifest(path))]
    names = list(names) if names is not None else [f"input{i}" for i in range(len(example))]
    given = [
        (name, list(part.shape[1:]), str(part.dtype).removeprefix("torch."))
        for name, part in zip(names, example, strict=True)
    ]
    if [entry[1:] for entry in recorded] != [entry[1:] for entry in given]:
        listed = [", ".join(f"{n} {s} {d}" for n, s, d in x) for x in (recorded, given)]
        raise ArtifactError(
            f"{where} takes {listed[0]} per sample, but is fed {listed[1]}; score it with the "
            "study it was exported from."
        )


def load(
    path: str | Path, *, factory: FactoryArg = None, trust: Collection[str] = ()
) -> CompressedGenerator:
    """Rebuild the compressed generator of an artifact (no pickle), in eval mode.

    The teacher skeleton is built by the manifest's factory only when it is a gansearch zoo
    generator or listed in ``trust``; with ``factory`` the manifest's reference is never
    imported. See the module docs for what is and is not guaranteed.

    Args:
        path: The artifact directory written by :func:`export`.
        factory: Your own teacher factory (a callable or ``"package.module:Callable"``),
            called with the manifest's JSON kwargs instead of the manifest's reference.
        trust: Exact ``"package.module:Callable"`` references you trust the manifest to name
            (e.g. your model package's generator class).

    Returns:
        A :class:`~gansearch.compress.apply.CompressedGenerator` (an ``nn.Module``)
        whose outputs equal those of the exported one.

    Raises:
        ArtifactError: for a missing, truncated, tampered, malformed or inconsistent
            artifact, an untrusted factory, or a factory that does not rebuild the
            recorded teacher. The message is one line.
    """
    directory = Path(path)
    where = f"artifact {directory}"
    manifest = read_manifest(directory)
    reference = manifest["factory"]["reference"]
    build, name = skeleton_factory(reference, factory=factory, trust=trust)
    weights_bytes = verified_files(directory, manifest)
    try:
        return _rebuild(where, manifest, weights_bytes, build, name)
    except ArtifactError:
        raise
    except Exception as error:  # noqa: BLE001 - manifest content the checks did not foresee
        raise ArtifactError(
            f"{where}: the manifest does not rebuild a generator ({type(error).__name__}: "
            f"{one_line(error)}); export the artifact again."
        ) from None


def _rebuild(
    where: str,
    manifest: Mapping[str, Any],
    weights_bytes: bytes,
    build: Callable[..., Any],
    name: str,
) -> CompressedGenerator:
    """Apply the manifest's plan to the skeleton ``build(**kwargs)`` and load the weights."""
    try:
        plan = CompressionPlan.from_dict(manifest["plan"])
        structure = GeneratorStructure.from_dict(manifest["structure"])
        validate(plan, structure)
    except (GansearchError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ArtifactError(
            f"{where}: the manifest is inconsistent ({type(error).__name__}: "
            f"{one_line(error)}); export the artifact again."
        ) from None
    kwargs = dict(manifest["factory"]["kwargs"])
    inputs = manifest_inputs(where, manifest)
    layer_specs: dict[str, Any] = manifest["encoding"]["weights"]
    listed: dict[str, Any] = manifest["encoding"]["tensors"]

    from safetensors.torch import load as load_safetensors

    try:
        stored = load_safetensors(weights_bytes)
    except Exception as error:  # noqa: BLE001 - any parse failure is a broken file
        raise ArtifactError(
            f"{where}: {WEIGHTS_FILE} cannot be read ({one_line(error)}); export the "
            "artifact again."
        ) from None
    check_listing(where, stored, listed)
    broken = [n for n, t in stored.items() if t.is_floating_point() and not t.isfinite().all()]
    if broken:
        raise ArtifactError(
            f"{where}: {WEIGHTS_FILE} holds NaN or inf in {broken[0]!r}; the artifact is "
            "corrupt - export it again."
        )

    skeleton = build_skeleton(build, name, kwargs)
    with torch.no_grad():  # values are overwritten; zeros make the throw-away fits cheap
        for parameter in skeleton.parameters():
            parameter.zero_()
    generator = torch.Generator().manual_seed(_REBUILD_SEED)
    example = tuple(
        torch.randn(shape, generator=generator).to(INPUT_DTYPES[dtype])
        if INPUT_DTYPES[dtype].is_floating_point
        else torch.zeros(shape, dtype=INPUT_DTYPES[dtype])
        for _, shape, dtype in inputs
    )
    try:
        rebuilt = apply_plan(skeleton, plan, example, structure=structure)
    except Exception as error:  # noqa: BLE001 - the factory does not fit the structure
        raise ArtifactError(
            f"{where}: the plan cannot be applied to {name}(**{brief(kwargs)}) "
            f"({type(error).__name__}: {one_line(error)}); the factory no longer builds "
            "the exported teacher - use the gansearch / model code version that exported it."
        ) from None
    expected = {n: (t.dtype, tuple(t.shape)) for n, t in encoded_state(rebuilt).items()}
    found = {n: (t.dtype, tuple(t.shape)) for n, t in stored.items()}
    if expected != found:
        differing = sorted(set(expected) ^ set(found)) or sorted(
            n for n in expected if expected[n] != found[n]
        )
        raise ArtifactError(
            f"{where}: the stored tensors do not fit the rebuilt generator (first differences: "
            f"{brief(differing[:3])}); the factory code changed since export - use the "
            "matching model code version or export again."
        )
    try:
        restore_encoded_state(rebuilt.module, stored, layer_specs)
    except EncodedStateError as error:
        raise ArtifactError(f"{where}: {one_line(error)}; export the artifact again.") from None
    return rebuilt.eval()
