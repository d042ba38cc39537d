"""Resolve a user's ``package.module:function`` factories with one-line errors."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from gansearch.errors import FactoryError


def resolve_factory(path: str, role: str) -> Callable[..., Any]:
    """Import ``module:function`` (or ``module:Class.attribute``) and return the callable.

    Only the named module is imported. ``role`` (e.g. "generator") names it in errors.
    """
    module_name, _, attribute = path.partition(":")
    try:
        factory: Any = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - the user's module failed to import
        raise FactoryError(
            f"cannot import module {module_name!r} for the {role} factory {path!r} "
            f"({type(error).__name__}: {error}); check the module path and PYTHONPATH"
        ) from None
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise FactoryError(
            f"module {module_name!r} has no callable {attribute!r} for the {role} factory "
            f"{path!r}; check the function name"
        )
    return factory


def call_factory(path: str, role: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Resolve and call a factory with ``kwargs``; a failing call is reported in one line."""
    factory = resolve_factory(path, role)
    try:
        return factory(**dict(kwargs or {}))
    except Exception as error:  # noqa: BLE001 - the user's factory failed
        raise FactoryError(
            f"the {role} factory {path!r} failed: {type(error).__name__}: {error}; "
            "fix the factory or its arguments"
        ) from None
