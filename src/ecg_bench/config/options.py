"""Component options: the ``Options`` mixin and one choice base per kind of component.

Every registered component (source, conversation dataset, representation, encoder, projector, ELM family,
condition, metric, pretrainer) declares its options as a dataclass subclassing its kind's choice base,
registered with it (``ENCODERS.register("st_mem", options=StMemOptions)``); the run config holds the choice and
its options (``--model.encoder.type st_mem --model.encoder.patch_size 50``). A choice base names its kind's
registry (``listing``); its first lookup of a name it does not know yet (and every listing of its choices)
makes that registry import its components (``ecg_bench.registry.discover``), so this package imports no
component package itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from draccus import ChoiceRegistry

from ecg_bench import registry
from ecg_bench.errors import UnknownNameError

_discovered: set[str] = set()
"""Listings whose registries have loaded (or are loading) their components."""


def _discover(cls: type) -> None:
    listing = getattr(cls, "listing", "")
    if not listing or listing in _discovered:
        return
    _discovered.add(listing)  # first, so a lookup made while the components import sees those registered so far
    try:
        registry.discover(listing)
    except BaseException:
        _discovered.discard(listing)
        raise


class Options:
    """Mixin of every kind's choice base: ``type`` is the registered name of the component chosen."""

    kind: ClassVar[str] = "component"
    """What one component of the kind is called in messages."""
    listing: ClassVar[str] = ""
    """The kind's registry (a name of ``ecg_bench.registry.KIND_PACKAGES``), loaded on first lookup."""

    @property
    def type(self) -> str:
        cls = type(self)
        return cls.get_choice_name(cls)  # type: ignore[attr-defined]

    @classmethod
    def get_choice_class(cls, name: str) -> Any:
        if name not in super().get_known_choices():  # type: ignore[misc]
            _discover(cls)
        return super().get_choice_class(name)  # type: ignore[misc]

    @classmethod
    def get_known_choices(cls) -> dict[str, Any]:
        _discover(cls)
        return super().get_known_choices()  # type: ignore[misc]

    @classmethod
    def get_choice_name(cls, subcls: type) -> str:
        try:
            return super().get_choice_name(subcls)  # type: ignore[misc]
        except ValueError:
            _discover(cls)
            return super().get_choice_name(subcls)  # type: ignore[misc]

    def problems(self) -> list[str]:
        """Range checks of the options (messages name the field, not the path: the caller prefixes it)."""
        return []


@dataclass
class SourceOptions(Options, ChoiceRegistry):
    """Base ECG dataset (``--data.source.type NAME``; ``ecg-bench list --details sources``)."""

    kind: ClassVar[str] = "source"
    listing: ClassVar[str] = "sources"


@dataclass
class MappedOptions(Options, ChoiceRegistry):
    """Conversation dataset joined to the segments (``--data.mapped.type NAME``)."""

    kind: ClassVar[str] = "mapped"
    listing: ClassVar[str] = "mapped"


@dataclass
class RepresentationOptions(Options, ChoiceRegistry):
    """How a segment becomes model input (``--model.representation.type NAME``)."""

    kind: ClassVar[str] = "representation"
    listing: ClassVar[str] = "representations"


@dataclass
class EncoderOptions(Options, ChoiceRegistry):
    """ECG encoder of the llava family (``--model.encoder.type NAME``)."""

    kind: ClassVar[str] = "encoder"
    listing: ClassVar[str] = "encoders"
    freeze: bool = False
    """Keep the encoder's weights fixed while the ELM trains (e.g. a pretrained encoder); false = train it."""


@dataclass
class ProjectorOptions(Options, ChoiceRegistry):
    """Projector from encoder features to the LLM's hidden size (``--model.projector.type NAME``)."""

    kind: ClassVar[str] = "projector"
    listing: ClassVar[str] = "projectors"


@dataclass
class ELMOptions(Options, ChoiceRegistry):
    """ELM family (``--model.elm.type NAME``)."""

    kind: ClassVar[str] = "elm"
    listing: ClassVar[str] = "elms"


@dataclass
class ConditionOptions(Options, ChoiceRegistry):
    """An evaluation condition (an item of ``eval.conditions``)."""

    kind: ClassVar[str] = "condition"
    listing: ClassVar[str] = "conditions"


@dataclass
class MetricOptions(Options, ChoiceRegistry):
    """A metric (an item of ``eval.metrics``)."""

    kind: ClassVar[str] = "metric"
    listing: ClassVar[str] = "metrics"


@dataclass
class PretrainerOptions(Options, ChoiceRegistry):
    """A pretraining objective (``ecg-bench pretrain NAME``)."""

    kind: ClassVar[str] = "pretrainer"
    listing: ClassVar[str] = "pretrainers"


KINDS: tuple[type, ...] = (SourceOptions, MappedOptions, RepresentationOptions, EncoderOptions, ProjectorOptions,
                           ELMOptions, ConditionOptions, MetricOptions, PretrainerOptions)  # fmt: skip


def choice(base: type, name: str, **options: Any) -> Any:
    """The options of component ``name`` of kind ``base`` (its defaults, with ``options`` set)."""
    try:
        cls = base.get_choice_class(name)
    except KeyError:
        raise UnknownNameError(base.kind, name, sorted(base.get_known_choices())) from None
    return cls(**options)


def _default(base: type, name: str, **options: Any) -> Any:
    return field(default_factory=lambda: choice(base, name, **options))


def _default_list(base: type, *names: str) -> Any:
    return field(default_factory=lambda: [choice(base, n) for n in names])


def describe_options(opts: Any) -> str:
    """A chosen component and its options in one line of Markdown: ```conv1d` (dim=128, num_tokens=4, freeze=false)``
    (model cards, logs)."""
    items = [f"{f.name}={json.dumps(to_dict(getattr(opts, f.name)))}" for f in dataclasses.fields(opts)]
    return f"`{opts.type}`" + (f" ({', '.join(items)})" if items else "")


def is_choice(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Options) and hint in KINDS



def to_dict(obj: Any) -> Any:
    """A config (or any of its parts) as plain JSON data; each choice carries its ``type`` first."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"type": obj.type} if isinstance(obj, Options) else {}
        for f in dataclasses.fields(obj):
            out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
