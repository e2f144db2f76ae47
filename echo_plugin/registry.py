"""Small per-kind registries: YAML ``{type: name, conf: {...}}`` specs -> objects.

Each kind of swappable Echo part (rotary embedding, attention, ...) has one
``Registry``. A new variant is one new file that decorates its class with
``@ROTARY.register("name")``; the encoder then builds it from YAML with
``ROTARY.build(spec, **context)``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, Iterator, Mapping, Optional, Type, TypeVar, Union

T = TypeVar("T")
Spec = Union[None, str, Mapping[str, Any]]


class Registry(Generic[T]):
    """Name -> class table for one kind of component."""

    def __init__(self, kind: str, base: Optional[type] = None) -> None:
        self.kind = kind
        self.base = base
        self._classes: Dict[str, Type[T]] = {}

    def register(self, name: str) -> Callable[[Type[T]], Type[T]]:
        """Class decorator adding ``cls`` under ``name`` (lower case)."""
        key = name.lower()

        def add(cls: Type[T]) -> Type[T]:
            if self.base is not None and not issubclass(cls, self.base):
                raise TypeError(f"{self.kind} '{key}': {cls.__name__} is not a {self.base.__name__}")
            known = self._classes.get(key)
            if known is not None and known is not cls:
                raise KeyError(f"{self.kind} '{key}' is already registered to {known.__qualname__}")
            self._classes[key] = cls
            return cls

        return add

    def get(self, name: str) -> Type[T]:
        try:
            return self._classes[name.lower()]
        except KeyError:
            raise KeyError(f"unknown {self.kind} type '{name}'; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def build(self, spec: Spec, **context: Any) -> T:
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
