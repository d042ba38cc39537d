"""Which code loading an artifact may run: the factory allow-list.

An artifact's manifest names the factory that rebuilds the teacher skeleton
(``"package.module:Callable"`` plus JSON kwargs). The manifest's hashes carry no key, so
anyone who can edit the files can recompute them: they detect corruption, not forgery.
Trust therefore comes from here, never from the artifact. :func:`skeleton_factory` returns
the callable that builds the skeleton, and imports the manifest's reference only when

* it is one of gansearch's own zoo generators, matched exactly against
  :data:`ZOO_FACTORIES` (no prefix rule: ``gansearch.zoo.models:torch.load`` is refused);
* the caller lists it in ``trust`` (exact reference strings); or
* the caller passes ``factory=`` (a callable, or a reference the caller chose), which then
  builds the skeleton with the manifest's JSON kwargs; the manifest's reference is ignored.

Anything else is refused with one line that says how to trust it, before any import.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import torch

from gansearch.compress.manifest import ArtifactError, brief, check_reference, one_line
from gansearch.errors import FactoryError
from gansearch.factories import resolve_factory

ZOO_FACTORIES: frozenset[str] = frozenset(
    {"gansearch.zoo.models:DCGANGenerator", "gansearch.zoo.resnet:ResnetGenerator"}
)
"""The references an artifact may name without the caller trusting them: gansearch's own
zoo generators, whose code ships with gansearch."""

MAX_ZOO_ELEMENTS = 1 << 28
"""Most parameter and buffer elements a zoo skeleton may have (1 GiB of float32); its
manifest kwargs (e.g. ``width``) are data from the artifact, so they are bounded."""

FactoryArg = Callable[..., Any] | str | None


def skeleton_factory(
    reference: str, *, factory: FactoryArg = None, trust: Collection[str] = ()
) -> tuple[Callable[..., Any], str]:
    """The callable that builds an artifact's teacher skeleton, and its name for messages.

    Args:
        reference: The manifest's ``factory.reference``.
        factory: The caller's own factory (a callable or a ``module:function`` reference);
            when given, the manifest's reference is never imported.
        trust: Exact references the caller trusts besides :data:`ZOO_FACTORIES`.

    Raises:
        ArtifactError: for a reference that is neither a zoo factory nor trusted (raised
            before anything is imported), or a ``factory`` that cannot be resolved.
    """
    if isinstance(trust, str):
        raise ArtifactError(
            f"`trust` must be a list of factory references, but got the string {trust!r}; "
            f"write trust=[{trust!r}]."
        )
    if factory is not None:
        if callable(factory):
            return factory, getattr(factory, "__qualname__", type(factory).__name__)
        if not isinstance(factory, str):
            raise ArtifactError(
                f"`factory` must be a callable or a 'package.module:Callable' reference, but "
                f"got {type(factory).__name__}; pass the generator class or function."
            )
        check_reference(factory)
        return _resolve(factory), factory
    check_reference(reference)
    if reference in ZOO_FACTORIES:
        return _bounded(_resolve(reference), reference), reference
    if reference in set(trust):
        return _resolve(reference), reference
    raise ArtifactError(
        f"the artifact's factory {reference!r} is not trusted; loading would import and call "
        f"it - if you trust that code, use gansearch.load(path, trust=[{reference!r}]) or "
        f"`--trust-factory {reference}`, or pass your own `factory=`."
    )


def _resolve(reference: str) -> Callable[..., Any]:
    try:
        return resolve_factory(reference, "teacher")
    except FactoryError as error:
        raise ArtifactError(str(error)) from None


def _bounded(factory: Callable[..., Any], reference: str) -> Callable[..., Any]:
    """Wrap a zoo factory: build on the meta device first and cap its size."""

    def build(**kwargs: Any) -> Any:
        with torch.device("meta"):
            probe = factory(**kwargs)
        if isinstance(probe, torch.nn.Module):
            elements = sum(t.numel() for t in (*probe.parameters(), *probe.buffers()))
            if elements > MAX_ZOO_ELEMENTS:
                raise ArtifactError(
                    f"the artifact's kwargs {brief(kwargs)} make {reference} hold {elements} "
                    f"elements (at most {MAX_ZOO_ELEMENTS}); the manifest is corrupt - "
                    "export the artifact again."
                )
        return factory(**kwargs)

    return build


def build_skeleton(build: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    """Call the chosen factory with the manifest's kwargs; one line if it fails."""
    try:
        model = build(**kwargs)
    except ArtifactError:
        raise
    except Exception as error:  # noqa: BLE001 - the factory rejects the manifest's kwargs
        raise ArtifactError(
            f"the teacher factory {name} failed with kwargs {brief(kwargs)} "
            f"({type(error).__name__}: {one_line(error)}); use the factory and kwargs that "
            "build the exported teacher."
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise ArtifactError(
            f"the teacher factory {name} returned {type(model).__name__}, not a "
            "torch.nn.Module; point it at the generator class or a function returning one."
        )
    return model.eval()
