"""Name-to-constructor registries for models, backbones and studies.

A registry maps a unique name to a callable that builds an object. Registering a name
twice is an error (never a silent override), and an unknown name is an error that lists
the closest registered names.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Callable[..., Any])


class Registry:
    """A mapping from unique names to constructors.

    Args:
        kind: What the registry holds ("model", "backbone"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator that registers a class or function under ``name`` (default: its own)."""

        def decorator(fn: T) -> T:
            key = name or fn.__name__
            if key in self._entries and self._entries[key] is not fn:
                other = self._entries[key]
                raise ValueError(
                    f"{self.kind} name {key!r} is already registered by "
                    f"{other.__module__}.{other.__qualname__}; choose another name"
                )
            self._entries[key] = fn
            log.debug("registered %s %r", self.kind, key)
            return fn

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """Return the constructor registered as ``name``.

        Raises:
            ValueError: If ``name`` is not registered; the message lists the closest names.
        """
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown {self.kind} {name!r}{hint} "
                f"(registered: {', '.join(sorted(self._entries)) or 'none'})"
            )
        return self._entries[name]

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard ``pattern``."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build the object registered as ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


MODELS = Registry("model")
BACKBONES = Registry("backbone")
STUDIES = Registry("study")

register_model = MODELS.register
register_backbone = BACKBONES.register
register_study = STUDIES.register


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered models matching ``pattern``, e.g. ``list_models("mask*")``."""
    return MODELS.list(pattern)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the registered model ``name`` with keyword arguments."""
    return MODELS.create(name, **kwargs)
