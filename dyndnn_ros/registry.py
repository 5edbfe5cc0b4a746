# SPDX-License-Identifier: Apache-2.0
"""One registry type for what the package builds by name: model families, back ends, policies.

Registration is one-way: each package imports its own modules, which register themselves here;
this module imports none of them. A factory may be given as "module:attribute" so that naming a
back end does not import torch or TensorRT until it is built.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Dict, Generic, TypeVar, Union

T = TypeVar("T")
Factory = Union[Callable[..., T], str]


class Registry(Generic[T]):
    """Factories by name. `create` checks keyword arguments against the factory's signature, so a
    misspelt parameter is a clear error naming what the factory accepts, while a TypeError raised
    inside a constructor (a bug) keeps its traceback."""

    def __init__(self, kind: str, error: type = ValueError, plural: str = "") -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.error = error
        self._factories: Dict[str, Factory] = {}
        self._tags: Dict[str, Dict[str, Any]] = {}

    def register(self, name: str, factory: Factory | None = None, **tags: Any):
        """`register(name, factory)`, or `@register(name)` on a class or function. Tags (e.g.
        evaluation_only=True) filter `names`. A second, different factory for a name is an error.
        """

        def add(target: Factory) -> Factory:
            if name in self._factories and self._factories[name] != target:
                raise self.error(f"{self.kind} {name!r} registered twice")
            self._factories[name] = target
            self._tags[name] = dict(tags)
            return target

        return add if factory is None else add(factory)

    def names(self, exclude_tag: str | None = None) -> list[str]:
        """Registered names, without those tagged `exclude_tag`."""
        return sorted(n for n in self._factories if not self._tags[n].get(exclude_tag or ""))

    def tags(self, name: str) -> dict[str, Any]:
        return dict(self._tags.get(name, {}))

    def factory(self, name: str, exclude_tag: str | None = None) -> Callable[..., T]:
        known = self.names(exclude_tag)
        if name not in known:
            raise self.error(f"unknown {self.kind} {name!r}; known {self.plural}: {known}")
        target = self._factories[name]
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module), attribute)
        return target

    def create(self, name: str, exclude_tag: str | None = None, **params: Any) -> T:
        factory = self.factory(name, exclude_tag)
        unknown = sorted(set(params) - accepted_parameters(factory))
        if unknown and "**" not in accepted_parameters(factory):
            accepted = sorted(accepted_parameters(factory) - {"self"})
            raise self.error(
                f"{self.kind} {name!r}: unknown parameters {unknown}; it accepts {accepted}"
            )
        return factory(**params)


def accepted_parameters(factory: Callable[..., Any]) -> set[str]:
    """Keyword names a factory accepts. A class whose __init__ passes **params on to its base
    accepts the base's names too; "**" in the set means anything goes (nothing to check)."""
    names: set[str] = set()
    owners = inspect.getmro(factory) if inspect.isclass(factory) else (factory,)
    for owner in owners:
        function = owner.__init__ if inspect.isclass(owner) else owner
        if function is object.__init__:  # the end of a chain of **params: nothing more
            return names
        parameters = inspect.signature(function).parameters.values()
        names |= {
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        }
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return names
    return names | {"**"}
