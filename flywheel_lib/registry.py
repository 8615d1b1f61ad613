"""One small registry of named plug-ins, shared by domains, fine-tune backends and judge backends.

Entries are ``"module:attr"`` strings (imported on first use, so a plug-in's heavy SDK is imported only when it
is used) or callables. A ``Registry`` is a dict, so ``REG[name] = target`` and ``name in REG`` work as expected.

>>> reg = Registry("fruit", {"apple": "collections:OrderedDict"})
>>> reg.resolve("apple").__name__
'OrderedDict'
>>> reg.resolve("pear")
Traceback (most recent call last):
...
KeyError: "unknown fruit 'pear'; registered: apple"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Registry"]


class Registry(dict):
    """Named targets of one kind (``kind`` names it in errors: "domain", "fine-tune backend", ...)."""

    def __init__(self, kind: str, entries: dict[str, str | Callable[..., Any]] | None = None,
                 error: type[Exception] = KeyError):
        super().__init__(entries or {})
        self.kind = kind
        self.error = error

    def register(self, name: str, target: str | Callable[..., Any]) -> None:
        """Register ``target``: a ``"module:attr"`` path or a factory/class."""
        self[name] = target

    def resolve(self, name: str) -> Callable[..., Any]:
        """The class or factory registered as ``name`` (imported now); an unknown name lists the known ones."""
        if name not in self:
            raise self.error(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self))}")
        target = self[name]
        if isinstance(target, str):
            import importlib

            mod, _, attr = target.partition(":")
            target = getattr(importlib.import_module(mod), attr)
        return target

    def create(self, name: str, *args, **kwargs) -> Any:
        """``resolve(name)(*args, **kwargs)``."""
        return self.resolve(name)(*args, **kwargs)
