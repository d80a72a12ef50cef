"""Name -> builder registries. One registry per kind of thing (sources, encoders, ELMs, ...).

Registries are filled at import time by decorators and never written at run time. A registry made with
``options=KindOptions`` (a choice base of ``ecg_bench.config``) takes each component's options dataclass
with it, so the run config can hold the choice and its options (``--model.encoder.type st_mem
--model.encoder.patch_size 50``)::

    @dataclass
    class StMemOptions(EncoderOptions):
        patch_size: int = 50
        \"\"\"Samples per patch.\"\"\"

    @ENCODERS.register("st_mem", options=StMemOptions)
    class STMEM(nn.Module): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from ecg_bench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from a name to a builder (and, for configurable kinds, its options dataclass). An unknown name
    raises an error listing the valid ones."""

    def __init__(self, kind: str, options: Any = None):
        self.kind = kind
        self.options_base = options
        """The kind's choice base (``ecg_bench.config.EncoderOptions``, ...), or None for a kind without options."""
        self._items: dict[str, T] = {}

    def register(self, name: str, options: type | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` as ``name``; ``options`` (a dataclass subclassing this kind's options base,
        registered as the choice ``name``) declares its options. Without it the component takes none."""
        if options is not None and self.options_base is None:
            raise TypeError(f"{self.kind} registry takes no options classes")

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if self.options_base is not None:
                opts = options or _no_options(self.options_base, name)
                if not issubclass(opts, self.options_base):
                    raise TypeError(f"{self.kind} {name!r}: options {opts.__name__} must subclass {self.options_base.__name__}")
                self.options_base.register_subclass(name, opts)
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def options(self, name: str) -> type:
        """The options dataclass of component ``name``."""
        self.get(name)
        return self.options_base.get_choice_class(name)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _no_options(base: type, name: str) -> type:
    """A fresh options class without fields for a component that declares none (one class per name, so the
    choice name of an instance is unambiguous)."""
    import dataclasses

    cls = dataclasses.make_dataclass(f"{base.__name__.removesuffix('Options')}_{name}_Options", [], bases=(base,))
    cls.__doc__ = f"{name}: no options."
    return cls
