"""Dataclass helpers of the config: field docstrings, type hints, walking the fields, path-valued options."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from collections.abc import Iterator, Mapping
from dataclasses import field
from functools import cache
from typing import Any

from ecg_bench.config.options import is_choice


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under each field of a dataclass (``x: int = 1`` then ``\"\"\"doc\"\"\"``), base classes
    included."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass.__module__ == "builtins":
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # made at run time (no source): no docs
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for prev, node in zip(body, body[1:]):
            if (
                isinstance(prev, ast.AnnAssign)
                and isinstance(prev.target, ast.Name)
                and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def flat_dict(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config mapping (``to_dict``, a config.json) as dotted keys: ``{"model.encoder.type": "conv1d", ...}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flat_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out



def iter_leaf_fields(cls: type, prefix: str = ""):
    """Yield (dotted_name, type, default, doc) for every field that is not a section, depth first (a choice
    field is one leaf: its options are the chosen component's, see ``iter_options``)."""
    hints = _hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if _is_config(t) and not is_choice(t):
            yield from iter_leaf_fields(t, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        yield f"{prefix}{f.name}", t, default, docs.get(f.name, "")


def iter_options(cls: type):
    """Yield (name, type, default, doc) for each option of options dataclass ``cls``."""
    hints, docs = _hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        yield f.name, hints[f.name], default, docs.get(f.name, "")


def _is_config(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _list_of_config(hint: Any) -> type | None:
    if typing.get_origin(hint) is list:
        (inner,) = typing.get_args(hint) or (None,)
        return inner if _is_config(inner) else None
    return None


PATH = "path"
"""Metadata key of a field that holds a file or folder path (``path_field``): "path", or "name_or_path"."""
CHECKPOINT_COPY = "checkpoint"
"""Metadata key of a path field's copy inside a checkpoint (``path_field(checkpoint=NAME)``)."""


def path_field(default: str = "", *, name_ok: bool = False, checkpoint: str = "", **kw: Any) -> Any:
    """A ``str`` option holding a file or folder path (empty = none), marked where it is declared::

        weights: str = path_field(checkpoint="encoder_weights")
        \"\"\"Pretrained encoder folder.\"\"\"

    A checkpoint saves it absolute and an evaluation resolves it against the checkpoint when relative. ``name_ok``:
    the value may also be a name (hub id, short name), taken as a path only where that path exists. ``checkpoint``:
    the name of the component's own copy inside a checkpoint (written by the component's ``save_extra``), used in
    place of the path when the checkpoint holds it."""
    meta = {PATH: "name_or_path" if name_ok else "path", **({CHECKPOINT_COPY: checkpoint} if checkpoint else {})}
    return field(default=default, metadata={**meta, **kw.pop("metadata", {})}, **kw)


def is_path(f: dataclasses.Field) -> bool:
    """Whether dataclass field ``f`` was declared with ``path_field``."""
    return bool(f.metadata.get(PATH))


@dataclasses.dataclass
class PathOption:
    """One path-valued option in a config tree."""

    owner: Any
    """The section or component options that holds it."""
    name: str
    """Its field name."""
    dotted: str
    """Its dotted name (``model.encoder.weights``, ``eval.metrics[1].nltk_data``)."""
    name_ok: bool
    """The value may be a name rather than a path (``path_field(name_ok=True)``)."""
    checkpoint: str
    """The name of the component's copy inside a checkpoint, or empty."""

    @property
    def value(self) -> Any:
        return getattr(self.owner, self.name)

    @value.setter
    def value(self, v: Any) -> None:
        setattr(self.owner, self.name, v)


def path_options(obj: Any, prefix: str = "") -> Iterator[PathOption]:
    """Every ``path_field`` of config ``obj``: its sections, chosen components and lists of components, depth first."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if is_path(f):
            yield PathOption(obj, f.name, f"{prefix}{f.name}", f.metadata[PATH] == "name_or_path", f.metadata.get(CHECKPOINT_COPY, ""))
        elif dataclasses.is_dataclass(value):
            yield from path_options(value, f"{prefix}{f.name}.")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    yield from path_options(v, f"{prefix}{f.name}[{i}].")
