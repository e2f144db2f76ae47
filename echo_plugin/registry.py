"""Per-kind tables of classes and the YAML ``{type: name, conf: {...}}`` specs that pick from them.

Each kind of swappable Echo part (rotary embedding, attention, ...) has one
``Registry``; :mod:`echo_plugin.catalog` declares all of them and fills each
with its built-in classes, imported on the table's first use (so that a class
may itself build parts from the catalog). The encoder builds a part from YAML
with ``ROTARY.build(spec, **context)``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, Iterator, Mapping, Optional, Tuple, TypeVar, Union

T = TypeVar("T")
Spec = Union[None, str, Mapping[str, Any]]
Builtins = Callable[[], Tuple[Optional[type], Mapping[str, Any]]]
"""Imports a kind's classes and returns ``(base class or None, {name: class})``."""


class UnknownNameError(KeyError, ValueError):
    """A name no table entry has (a KeyError, and a ValueError like other bad YAML values)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> class table for one kind of component.

    Args:
        kind: the kind's name in messages (``rotary``, ``attention``, ...).
        where: where its names go in YAML (for ``list_registries``).
        builtins: returns the base class every entry must subclass (or None) and
            the built-in entries; called once, on first use.
        extend: called on every lookup, after the built-ins (the catalog loads the
            entry-point variants with it; it must be idempotent).
    """

    def __init__(
        self,
        kind: str,
        where: str = "",
        builtins: Optional[Builtins] = None,
        extend: Optional[Callable[[], None]] = None,
    ) -> None:
        self.kind = kind
        self.where = where
        self.base: Optional[type] = None
        self._classes: Dict[str, T] = {}
        self._builtins = builtins
        self._extend = extend

    def _filled(self) -> Dict[str, T]:
        """The entries, with the built-ins imported on first use."""
        if self._builtins is not None:
            base, classes = self._builtins()
            self._builtins = None
            self.base = base
            for name, cls in classes.items():
                self._add(name, cls)
        return self._classes

    def _complete(self) -> Dict[str, T]:
        """The entries, built-ins and extensions."""
        classes = self._filled()
        if self._extend is not None:
            self._extend()
        return classes

    def _add(self, name: str, cls: Any) -> None:
        key = name.lower()
        if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{self.kind} '{key}': {getattr(cls, '__name__', cls)} is not a {self.base.__name__}")
        known = self._classes.get(key)
        if known is not None and known is not cls:
            raise KeyError(f"{self.kind} '{key}' is already registered to {getattr(known, '__qualname__', known)}")
        self._classes[key] = cls

    def add(self, name: str, cls: Any) -> None:
        """Add ``cls`` under ``name`` (lower case); refused if the name is taken by another class
        or ``cls`` is not a subclass of the kind's base."""
        self._filled()
        self._add(name, cls)

    def get(self, name: str) -> T:
        try:
            return self._complete()[name.lower()]
        except KeyError:
            where = f" ({self.where})" if self.where else ""
            known = ", ".join(self.names())
            raise UnknownNameError(f"unknown {self.kind} type '{name}'{where}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._complete())

    def items(self) -> list[Tuple[str, T]]:
        """``(name, class)`` pairs, sorted by name."""
        return sorted(self._complete().items())

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._complete()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def build(self, spec: Spec, **context: Any) -> Any:
        """Instantiate from ``"name"`` or ``{"type": name, "conf": {...}}``.

        ``context`` holds sizes the caller knows (e.g. ``head_dim``); the YAML
        ``conf`` may not override them.
        """
        name, conf = parse_spec(spec, self.kind)
        clash = set(conf) & set(context)
        if clash:
            raise ValueError(f"{self.kind} '{name}': conf may not set {sorted(clash)} (set by the model)")
        return self.get(name)(**context, **conf)


def parse_spec(spec: Spec, kind: str) -> tuple[str, Dict[str, Any]]:
    """Normalise a YAML spec to ``(type, conf)``."""
    if spec is None:
        raise ValueError(f"{kind}: empty spec")
    if isinstance(spec, str):
        return spec, {}
    unknown = set(spec) - {"type", "conf"}
    if unknown or "type" not in spec:
        raise ValueError(f"{kind} spec must be {{type: ..., conf: {{...}}}}, got {dict(spec)}")
    return str(spec["type"]), dict(spec.get("conf") or {})
