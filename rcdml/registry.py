"""Named registries: backbones (``model.backbone``), losses (``loss.name``) and datasets
(``data.name``) are each one :class:`Registry`, filled by decorators where they are defined."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from rcdml.config.checks import check_choice

T = TypeVar("T")
F = TypeVar("F", bound=Callable)


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise KeyError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def register(self, name: str, make: Callable[[F], T] = lambda f: f) -> Callable[[F], F]:
        """A decorator that registers ``make(function)`` under ``name`` and returns the function."""
        def add(function: F) -> F:
            self.add(name, make(function))
            return function
        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def check(self, key: str, name: str) -> None:
        """ConfigError naming ``key`` unless ``name`` is registered."""
        check_choice(key, name, self.names())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        return self._entries[name]
