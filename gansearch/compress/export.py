"""Export a compressed generator as a self-describing artifact, and load it back.

An artifact is a directory (written atomically, never half-present at its path):

* ``weights.safetensors`` - exactly :func:`~gansearch.compress.apply.encoded_state`:
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
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gansearch.compress.apply import (
    CompressedGenerator,
    apply_plan,
    encoded_state,
    encoding_manifest,
)
from gansearch.compress.encodings import decode_weight, parse_encoding, unpack_bits
from gansearch.compress.fakequant import (
    AffineParametrization,
    CodebookParametrization,
    WeightEncodingParametrization,
)
from gansearch.compress.groups import GeneratorStructure, describe
from gansearch.compress.plan import CompressionPlan, validate
from gansearch.errors import GansearchError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ONNX_FILE",
    "WEIGHTS_FILE",
    "ArtifactError",
    "dequantized_copy",
    "export",
    "load",
    "read_manifest",
]

FORMAT_NAME = "gansearch-artifact"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
ONNX_INPUT_NAME = "input"
ONNX_OUTPUT_NAME = "output"
_REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_HASH_KEY = "manifest_sha256"
_REBUILD_SEED = 0


class ArtifactError(GansearchError):
    """An artifact that cannot be written or read: the message names the problem and fix."""


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------


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
    _check_reference(reference)
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
    _check_json("metrics", body["metrics"])
    _check_json("teacher_kwargs", kwargs)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        from safetensors.torch import save_file

        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
        _export_onnx(compressed.module, example[:1], staging / ONNX_FILE)
        body["files"] = {name: _file_record(staging / name) for name in (WEIGHTS_FILE, ONNX_FILE)}
        manifest = {**body, _HASH_KEY: _manifest_digest(body)}
        _write_text(staging / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True))
        _swap_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    if target.is_dir() and (not any(target.iterdir()) or _is_artifact(target)):
        return
    kind = "directory" if target.is_dir() else "file"
    raise ArtifactError(
        f"refusing to overwrite {target}: it is an existing {kind} that is not a gansearch "
        "artifact; choose another path or remove it first."
    )


def _is_artifact(directory: Path) -> bool:
    try:
        data = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


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
    if not _REFERENCE.match(reference) or cls.__module__ == "__main__":
        raise ArtifactError(
            f"cannot rebuild {cls.__qualname__} from an import reference ({reference!r} is not "
            "importable); pass `teacher_factory='package.module:Callable'` to export."
        )
    return reference


def _check_reference(reference: str) -> None:
    if not isinstance(reference, str) or not _REFERENCE.match(reference):
        raise ArtifactError(
            f"factory reference {reference!r} must look like 'package.module:Callable'; "
            "fix `teacher_factory` (or the artifact's manifest)."
        )


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
    from gansearch.compress.deploy import deployment_copy  # deploy imports this module

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


def dequantized_copy(module: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``module`` with every parametrised weight baked in.

    The copy's weights are plain parameters holding the decoded (dequantised) values, so
    it runs as an ordinary float network; ``module`` is left unchanged. Activation
    quantisers are kept.
    """
    baked = copy.deepcopy(module).eval()
    for submodule in baked.modules():
        if not parametrize.is_parametrized(submodule):
            continue
        # torch's deepcopy shares the injected ``Parametrized<Class>`` between the original
        # and the copy, and remove_parametrizations deletes the weight property from that
        # class, which would break the original. Give the copy a private class first.
        shared = type(submodule)
        submodule.__class__ = type(shared.__name__, shared.__bases__, dict(shared.__dict__))
        for name in list(submodule.parametrizations.keys()):
            parametrize.remove_parametrizations(submodule, name, leave_parametrized=True)
            baked_tensor = getattr(submodule, name)
            # Decoded weights can be strided views (channel axis moved back); kernels want
            # the standard layout, as the teacher has.
            baked_tensor.data = baked_tensor.data.contiguous()
        if hasattr(submodule, "weight_bits"):
            submodule.weight_bits = 32
    return baked


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


def _check_json(what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ArtifactError(
            f"`{what}` must be JSON data (numbers, strings, lists, dicts; no NaN), "
            f"but {error}; convert or drop those entries."
        ) from None


def _gansearch_version() -> str:
    from gansearch import __version__

    return __version__


# ---------------------------------------------------------------------------------------
# Hashes and files
# ---------------------------------------------------------------------------------------


def _manifest_digest(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != _HASH_KEY}, sort_keys=True, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _file_record(file: Path) -> dict[str, Any]:
    data = file.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _write_text(file: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and verify an artifact's manifest (format, version, its own hash).

    Raises:
        ArtifactError: for a missing directory or manifest, unreadable JSON, another
            format or version, or a manifest whose content no longer matches its hash.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise ArtifactError(
            f"artifact not found: {directory} is not a directory; check the path "
            "(artifacts are written by gansearch.export)."
        )
    file = directory / MANIFEST_FILE
    if not file.is_file():
        raise ArtifactError(
            f"artifact {directory} has no {MANIFEST_FILE}; it is incomplete or not an "
            "artifact - export it again."
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArtifactError(
            f"artifact {directory}: {MANIFEST_FILE} is not valid JSON ({error}); the file is "
            "truncated or edited - export it again."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(
            f"artifact {directory}: {MANIFEST_FILE} is not a {FORMAT_NAME} manifest; "
            "check the path."
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact {directory}: `format_version == {FORMAT_VERSION}` must hold, but got "
            f"{version!r}; load it with the gansearch version that wrote it."
        )
    if manifest.get(_HASH_KEY) != _manifest_digest(manifest):
        raise ArtifactError(
            f"artifact {directory}: {MANIFEST_FILE} does not match its recorded SHA-256 "
            f"({_HASH_KEY}); it was edited or corrupted - export the artifact again."
        )
    return manifest


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
    weights_bytes = _verified_files(directory, manifest)
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
    _check_reference(reference)

    from safetensors.torch import load as load_safetensors

    try:
        stored = load_safetensors(weights_bytes)
    except Exception as error:  # noqa: BLE001 - any parse failure is a broken file
        raise ArtifactError(
            f"{where}: {WEIGHTS_FILE} cannot be read ({error}); export the artifact again."
        ) from None
    _check_listing(where, stored, listed)

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
    _write_state(where, rebuilt.module, stored, layer_specs)
    return rebuilt.eval()


def _verified_files(directory: Path, manifest: Mapping[str, Any]) -> bytes:
    """Check every recorded file's size and SHA-256; return the weights file's bytes."""
    files = manifest.get("files")
    if not isinstance(files, dict) or WEIGHTS_FILE not in files:
        raise ArtifactError(
            f"artifact {directory}: the manifest lists no {WEIGHTS_FILE}; export it again."
        )
    weights = b""
    for name, record in sorted(files.items()):
        file = directory / name
        if not file.is_file():
            raise ArtifactError(
                f"artifact {directory} is missing {name}; the artifact is incomplete - "
                "export it again."
            )
        data = file.read_bytes()
        if len(data) != record.get("bytes"):
            raise ArtifactError(
                f"artifact {directory}: {name} has {len(data)} bytes but the manifest records "
                f"{record.get('bytes')}; the file is truncated or replaced - export it again."
            )
        if hashlib.sha256(data).hexdigest() != record.get("sha256"):
            raise ArtifactError(
                f"artifact {directory}: {name} does not match its SHA-256 in the manifest; "
                "the file was modified or corrupted - export it again."
            )
        if name == WEIGHTS_FILE:
            weights = data
    return weights


def _check_listing(where: str, stored: Mapping[str, Tensor], listed: Mapping[str, Any]) -> None:
    found = {
        n: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        for n, t in stored.items()
    }
    if found != dict(listed):
        differing = sorted(set(found) ^ set(listed)) or sorted(
            n for n in found if found[n] != listed[n]
        )
        raise ArtifactError(
            f"{where}: {WEIGHTS_FILE} does not hold the tensors the manifest lists (first "
            f"differences: {differing[:3]}); export the artifact again."
        )


def _build_skeleton(reference: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Import ``package.module:Callable`` (only that module) and call it with ``kwargs``."""
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - the named module failed to import
        raise ArtifactError(
            f"cannot import module {module_name!r} of the teacher factory {reference!r} "
            f"({type(error).__name__}: {error}); install the model code or fix PYTHONPATH."
        ) from None
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ArtifactError(
                f"module {module_name!r} has no {attribute!r} for the teacher factory "
                f"{reference!r}; check the reference."
            )
    if not callable(target):
        raise ArtifactError(f"the teacher factory {reference!r} is not callable; fix it.")
    try:
        model = target(**kwargs)
    except Exception as error:  # noqa: BLE001 - the factory failed
        raise ArtifactError(
            f"the teacher factory {reference!r} failed with kwargs {dict(kwargs)} "
            f"({type(error).__name__}: {error}); fix `teacher_kwargs`."
        ) from None
    if not isinstance(model, nn.Module):
        raise ArtifactError(
            f"the teacher factory {reference!r} returned {type(model).__name__}, not a "
            "torch.nn.Module; point it at the generator class or a function returning one."
        )
    return model.eval()


@torch.no_grad()
def _write_state(
    where: str, model: nn.Module, stored: Mapping[str, Tensor], layer_specs: Mapping[str, Any]
) -> None:
    """Copy the stored tensors into ``model`` (whose tree already matches them)."""
    consumed: set[str] = set()
    for qualified, spec in layer_specs.items():
        module = model.get_submodule(qualified)
        prefix = f"{qualified}.weight."
        payload = {n[len(prefix) :]: t for n, t in stored.items() if n.startswith(prefix)}
        consumed.update(prefix + key for key in payload)
        try:
            encoding = parse_encoding(spec["spec"])
            shape = tuple(int(s) for s in spec["shape"])
            decoded = decode_weight(spec["spec"], shape, int(spec["channel_axis"]), payload)
        except (KeyError, TypeError, ValueError) as error:
            raise ArtifactError(
                f"{where}: layer '{qualified}' cannot be decoded ({error}); export it again."
            ) from None
        if not parametrize.is_parametrized(module, "weight"):
            module.weight.copy_(decoded.to(module.weight.dtype))
            continue
        parametrizations = module.parametrizations.weight
        parametrizations.original.copy_(decoded.to(parametrizations.original.dtype))
        for item in parametrizations:
            if not isinstance(item, WeightEncodingParametrization):
                continue
            if item.encoding != encoding:
                raise ArtifactError(
                    f"{where}: layer '{qualified}' is stored as {spec['spec']!r} but the plan "
                    f"gives {item.encoding.spec!r}; export the artifact again."
                )
            if isinstance(item, AffineParametrization):
                item.scale.copy_(payload["scale"].to(item.scale.dtype))
                item.zero.copy_(payload["zero"].to(item.zero.dtype))
            elif isinstance(item, CodebookParametrization):
                item.centroids.copy_(payload["centroids"].to(item.centroids.dtype))
                count = math.prod(shape)
                indices = unpack_bits(payload["codes"], encoding.index_bits, count)
                item.indices.copy_(indices.to(item.indices.dtype))
    targets = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    for name, tensor in stored.items():
        if name in consumed:
            continue
        target = targets.get(name)
        if target is None or target.shape != tensor.shape:
            raise ArtifactError(
                f"{where}: stored tensor {name!r} has no place in the rebuilt generator; "
                "export the artifact again."
            )
        target.copy_(tensor.to(target.dtype))
