"""Name -> builder registries, one per kind of component (sources, encoders, ELM families, ...), found by themselves.

A registry fills itself on first lookup (``get``, ``names``, ``in``, iteration): it imports every module and
subpackage of its ``package`` (a component is one file or one folder there; names starting with ``_`` are
skipped) and then every entry point of its ``entry_point_group``, through which another installed distribution
adds components without touching this source tree (like pytest's ``pytest11`` plugins)::

    # pyproject.toml of a plug-in distribution
    [project.entry-points."ecg_bench.encoders"]
    gru = "my_ecg_plugin.gru"        # a module whose import registers the component

A registry made with ``options=KindOptions`` (a choice base of ``ecg_bench.config``) takes each component's
options dataclass with it, so the run config can hold the choice and its options (``--model.encoder.type st_mem
--model.encoder.patch_size 50``)::

    @dataclass
    class StMemOptions(EncoderOptions):
        patch_size: int = 50
        \"\"\"Samples per patch.\"\"\"

    @ENCODERS.register("st_mem", options=StMemOptions)
    class STMEM(nn.Module): ...

``KIND_PACKAGES`` names, for each kind, the module whose import creates its registry; ``all_registries()``
(``ecg-bench list``) and the config's choice bases (``discover``) find the registries through it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import sys
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from ecg_bench.errors import ECGBenchError, UnknownNameError

T = TypeVar("T")

KIND_PACKAGES: dict[str, str] = {
    "sources": "ecg_bench.data.sources.base",
    "mapped": "ecg_bench.data.mapped.base",
    "representations": "ecg_bench.representations.base",
    "encoders": "ecg_bench.models.encoders.base",
    "projectors": "ecg_bench.models.projection",
    "elms": "ecg_bench.models.elm.base",
    "llms": "ecg_bench.models.llm",
    "conditions": "ecg_bench.evaluation.conditions",
    "metrics": "ecg_bench.evaluation.metrics",
    "pretrainers": "ecg_bench.models.encoders.pretraining",
    "launchers": "ecg_bench.sweep.launchers",
    "import_formats": "ecg_bench.models.encoders.weights",
}
"""Listing name of each kind (``ecg-bench list``, the entry point group ``ecg_bench.<name>``) -> the module whose
import creates its registry. A kind added elsewhere (e.g. sweep launchers) adds its line here."""

_REGISTRIES: dict[str, Registry] = {}
"""Every registry made, by listing name."""


class PluginError(ECGBenchError):
    """A component module or an installed plug-in (entry point) failed to import."""


class Registry(Generic[T]):
    """A mapping from a name to a builder (and, for configurable kinds, its options dataclass), filled on first
    lookup from its package and its entry points. An unknown name raises an error listing the valid ones."""

    def __init__(self, kind: str, options: Any = None, package: str | None = None, listing: str | None = None,
                 entry_point_group: str | None = None):  # fmt: skip
        self.kind = kind
        """What one component is called in messages (``encoder``, ``mapped dataset``)."""
        self.options_base = options
        """The kind's choice base (``ecg_bench.config.EncoderOptions``, ...), or None for a kind without options."""
        self.package = package
        """The package whose modules and subpackages are the built-in components (None: only entry points)."""
        self.listing = listing or f"{kind}s"
        """The kind's name in ``ecg-bench list`` (``encoders``)."""
        self.entry_point_group = entry_point_group or f"ecg_bench.{self.listing}"
        """Entry point group through which installed distributions add components (``ecg_bench.encoders``)."""
        self._items: dict[str, T] = {}
        self._state = "new"  # new -> loading -> loaded
        if self.listing in _REGISTRIES:
            raise ValueError(f"two registries are listed as {self.listing!r}")
        _REGISTRIES[self.listing] = self

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

    def load(self) -> Registry[T]:
        """Import the package's component modules, then the installed plug-ins (once; a lookup made while they
        import sees the components registered so far)."""
        if self._state != "new":
            return self
        self._state = "loading"
        try:
            if self.package:
                for module in component_modules(self.package):
                    _import(module, f"{self.kind} module {module}")
            for ep in entry_points(self.entry_point_group):
                dist = getattr(ep.dist, "name", None) or "an installed distribution"
                try:
                    ep.load()
                except Exception as e:
                    raise PluginError(f"plug-in {ep.name!r} = {ep.value!r} (entry point group {self.entry_point_group}, "
                                      f"distribution {dist}) failed to load: {type(e).__name__}: {e}") from e  # fmt: skip
        except BaseException:
            self._state = "new"
            raise
        self._state = "loaded"
        return self

    def get(self, name: str) -> T:
        self.load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def options(self, name: str) -> type:
        """The options dataclass of component ``name``."""
        self.get(name)
        return self.options_base.get_choice_class(name)

    def names(self) -> list[str]:
        self.load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"


def component_modules(package: str) -> list[str]:
    """The public modules and subpackages directly inside ``package`` (a module without submodules: itself),
    sorted; the module being imported right now (the one that made the registry) is left out."""
    pkg = _import(package, f"package {package}")
    if not hasattr(pkg, "__path__"):
        return []
    names = [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    return sorted(n for n in names if not _initialising(n))


def _initialising(name: str) -> bool:
    mod = sys.modules.get(name)
    spec = getattr(mod, "__spec__", None)
    return mod is not None and getattr(spec, "_initializing", False)


def _import(name: str, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ECGBenchError:
        raise
    except Exception as e:
        raise PluginError(f"{what} failed to import: {type(e).__name__}: {e}") from e


def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The installed distributions' entry points of ``group``, by name (one per name: the first found on sys.path)."""
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=group):
        seen.setdefault(ep.name, ep)
    return [seen[n] for n in sorted(seen)]


def registry(listing: str) -> Registry:
    """The registry of kind ``listing`` (``encoders``), created by importing its module (not yet loaded)."""
    if listing not in _REGISTRIES:
        if listing not in KIND_PACKAGES:
            raise UnknownNameError("kind", listing, sorted(KIND_PACKAGES))
        _import(KIND_PACKAGES[listing], f"{listing} registry module {KIND_PACKAGES[listing]}")
    return _REGISTRIES[listing]


def all_registries() -> dict[str, Registry]:
    """Every kind's registry, loaded (built-in components and plug-ins), by listing name in KIND_PACKAGES order."""
    regs = {name: registry(name) for name in KIND_PACKAGES}
    regs.update({k: r for k, r in _REGISTRIES.items() if k not in regs})
    for r in regs.values():
        r.load()
    return regs


def discover(listing: str) -> None:
    """Load the registry of kind ``listing``: a config choice base calls this on its first lookup."""
    registry(listing).load()


def _no_options(base: type, name: str) -> type:
    """A fresh options class without fields for a component that declares none (one class per name, so the
    choice name of an instance is unambiguous)."""
    import dataclasses

    cls = dataclasses.make_dataclass(f"{base.__name__.removesuffix('Options')}_{name}_Options", [], bases=(base,))
    cls.__doc__ = f"{name}: no options."
    return cls
