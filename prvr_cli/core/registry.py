"""Names -> components, one ``Registry`` per kind (visual backbones, text encoders, loss terms,
encoders, methods, search engines, test models), after timm's ``register_model``.

A registry keeps registration order (what help texts and error messages list), refuses a name
registered twice, and turns an unknown name into one line that lists the known ones::

    ENGINES = Registry("engine", where="--engine")

    @ENGINES.register("brute")
    def brute(searcher, q, k): ...

    ENGINES["brute"]   # the function; ENGINES["nope"] raises UnknownName:
                       # --engine: unknown engine 'nope' (known: brute)

Item assignment (``REG[name] = obj``, what ``monkeypatch.setitem`` does) replaces an entry on
purpose; ``register`` is the way to add one. Nothing heavy is imported here: the command line
lists registered names without loading torch.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Generic, TypeVar

from prvr_cli.errors import UnknownName, unknown_name

T = TypeVar("T")
_UNSET = object()


class Registry(MutableMapping[str, T], Generic[T]):
    """Components of one ``kind``, by name, in registration order. ``where`` names the option or
    setting a user types the name into (``--visual``, ``model.encoder``), for the error message."""

    def __init__(self, kind: str, where: str | None = None, items: dict[str, T] | None = None):
        self.kind, self.where = kind, where
        self._items: dict[str, T] = {}
        for name, obj in (items or {}).items():
            self.register(name, obj)

    def register(self, name: str, obj=_UNSET):
        """``register(name, obj)`` adds ``obj``; ``@register(name)`` adds the decorated class or
        function and returns it unchanged. A name already registered is a ``ValueError``."""

        def add(obj: T) -> T:
            if name in self._items:
                old = self._items[name]
                raise ValueError(
                    f"{self.kind} {name!r} is already registered ({getattr(old, '__qualname__', repr(old))})"
                )
            self._items[name] = obj
            return obj

        return add if obj is _UNSET else add(obj)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._items)

    def check(self, name: str) -> str:
        """``name`` if it is registered; an ``UnknownName`` listing the names otherwise."""
        self[name]
        return name

    def copy(self) -> Registry[T]:
        """A registry of the same kind and entries (a test registers into a copy it patches in)."""
        return Registry(self.kind, self.where, self._items)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise UnknownName(unknown_name(self.kind, name, self._items, self.where)) from None

    def __contains__(self, name) -> bool:
        try:
            return name in self._items
        except TypeError:
            return False

    def __setitem__(self, name: str, obj: T) -> None:
        self._items[name] = obj

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
