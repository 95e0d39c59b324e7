"""One small registry used for families, exporters, runtimes, searchers and recipes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from compress.core.errors import unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping that refuses duplicates and suggests close matches on lookup.

    >>> r: Registry[int] = Registry("number")
    >>> r.add("one", 1)
    >>> r.get("one")
    1
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, item: T, *, aliases: tuple[str, ...] = ()) -> None:
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
        self._items[name] = item
        for alias in aliases:
            self._aliases[alias] = name

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(item: T) -> T:
            self.add(name, item, aliases=aliases)
            return item

        return deco

    def canonical(self, name: str) -> str:
        key = name.strip()
        if key not in self._items and key not in self._aliases:
            key = key.lower()
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise unknown(self.kind, name, [*self._items, *self._aliases])
        return key

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())
