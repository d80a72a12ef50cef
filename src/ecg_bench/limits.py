"""Bounds checked BEFORE work or memory is spent on an untrusted file: file size, structure, nesting.

A small hostile file can claim or imply a huge amount of work: a 229-byte pickle whose lists share
references expands to 2^30 nodes when anything walks it (a repr, a type check per item); a JSON or
pickle nested 200,000 deep breaks every recursive walk with a RecursionError. ``read_bytes_capped``
refuses a file larger than its cap before reading it, ``check_structure`` walks a loaded structure
ITERATIVELY, counting every visit (a shared list is counted again at each reference, so a DAG that
expands exponentially is refused after ``max_nodes`` steps, not walked), and ``load_json_file``
reads a JSON file with both. Every refusal is a DataError naming the file and the limit; messages
use type names and ``reprlib``-shortened values only, never a full repr.
"""

from __future__ import annotations

import json
import reprlib
from pathlib import Path
from typing import Any

from ecg_bench.errors import DataError

MAX_DEPTH = 64
"""Default nesting limit of ``check_structure`` (the project's JSON documents nest a few levels)."""
MAX_NODES = 10_000_000
"""Default limit on the nodes (containers, keys and scalars, each reference counted) of one structure."""
MAX_STRING = 16 * 1024 * 1024
"""Default limit on the length of one str / bytes value (characters or bytes)."""
MAX_JSON_BYTES = 256 * 1024 * 1024
"""Default size limit of a JSON document read whole (``load_json_file``)."""

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxtuple, _short.maxlevel = 40, 40, 4, 4, 4, 2


def short_repr(value: Any) -> str:
    """A bounded repr (at most ~100 characters, at most 2 levels deep): safe for any structure in a message."""
    try:
        return _short.repr(value)
    except Exception:  # noqa: BLE001 - a hostile object's __repr__ must not break an error message
        return f"<{type(value).__name__}>"


def file_size_capped(path: str | Path, max_bytes: int, what: str) -> int:
    """Size of ``path``; DataError naming it when larger than ``max_bytes`` (checked before it is read)."""
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise DataError(f"{path}: {size:,} bytes is larger than the {max_bytes:,} bytes a {what} may have; not read")
    return size


def read_bytes_capped(path: str | Path, max_bytes: int, what: str) -> bytes:
    """The bytes of ``path``, refused (DataError) before reading when the file exceeds ``max_bytes``."""
    size = file_size_capped(path, max_bytes, what)
    with open(path, "rb") as f:
        data = f.read(size + 1)  # the file may grow between stat and read (read(n) allocates n bytes first)
    if len(data) > size:
        raise DataError(f"{path}: grew while it was read; not read")
    return data


def check_structure(
    obj: Any,
    where: str,
    *,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    max_string: int = MAX_STRING,
) -> int:
    """Walk ``obj`` (dict / list / tuple / set / scalars) iteratively and return its node count.

    Refused with a DataError naming ``where``: nesting deeper than ``max_depth``, more than
    ``max_nodes`` nodes (every visit counts: a container referenced twice is walked twice, so shared
    references that expand exponentially are stopped after ``max_nodes`` steps), a str / bytes longer
    than ``max_string``. Dict keys count as nodes. The walk is O(min(nodes, max_nodes)) and allocates
    only its stack (at most ``max_depth`` iterators).
    """
    nodes = 1
    stack: list[tuple[Any, bool]] = []  # (iterator over (key, child), whether it walks a dict)
    path: list[Any] = []  # keys from the root to the current value, for messages
    value = obj
    while True:
        if isinstance(value, (str, bytes, bytearray)):
            if len(value) > max_string:
                raise DataError(
                    f"{where}: {type(value).__name__} at {_where(path)} has {len(value):,} "
                    f"characters/bytes, more than the {max_string:,} allowed"
                )
        elif isinstance(value, (dict, list, tuple, set, frozenset)):
            if len(stack) >= max_depth:
                raise DataError(f"{where}: nested deeper than {max_depth} levels (at {_where(path[:8])}...)")
            is_dict = isinstance(value, dict)
            stack.append((iter(value.items()) if is_dict else iter(enumerate(value)), is_dict))
            path.append(None)
        while stack:  # the next value to visit: the next child of the innermost unfinished container
            items, is_dict = stack[-1]
            nxt = next(items, None)
            if nxt is None:
                stack.pop()
                path.pop()
                continue
            key, value = nxt
            nodes += 2 if is_dict else 1  # a dict key is a node too
            if nodes > max_nodes:
                raise DataError(
                    f"{where}: more than {max_nodes:,} values (every reference to a shared container "
                    "counted); refused before walking it further"
                )
            path[-1] = key
            if is_dict and isinstance(key, (str, bytes)) and len(key) > max_string:
                raise DataError(f"{where}: a key of {len(key):,} characters, more than the {max_string:,} allowed")
            break
        else:
            return nodes


def _where(path: list[Any]) -> str:
    return "".join(f"[{short_repr(k)}]" for k in path) or "the top"


def load_json_file(
    path: str | Path,
    what: str,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    max_string: int = MAX_STRING,
) -> Any:
    """Parse a JSON file whose size, nesting and node count are bounded; every failure is a DataError naming it."""
    data = read_bytes_capped(path, max_bytes, what)
    return parse_json(data, str(path), what, max_depth=max_depth, max_nodes=max_nodes, max_string=max_string)


def _no_constants(name: str):
    raise ValueError(f"the non-standard number {name} (none of our files writes NaN or Infinity)")


def parse_json(
    text: str | bytes,
    where: str,
    what: str = "JSON document",
    *,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    max_string: int = MAX_STRING,
) -> Any:
    """``json.loads`` whose errors (bad syntax, bad encoding, nesting past Python's recursion limit) are DataErrors."""
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise DataError(f"{where}: {what} nested too deeply to parse (at most {max_depth} levels are accepted)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: expected a {what}, got invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: expected a UTF-8 {what}, got undecodable bytes ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # _no_constants
        raise DataError(f"{where}: expected a {what}, got {e}") from None
    check_structure(obj, where, max_depth=max_depth, max_nodes=max_nodes, max_string=max_string)
    return obj


# ------------------------------------------------------------------ model sizes in a run config (checkpoints)
# A checkpoint's config.json is someone else's file: its sizes are checked before the model is built, since the
# model allocates its weights from them at once (``model.encoder.dim`` 1e6 is gigabytes; ``num_tokens`` 1e7 aborts)
# and ``eval.max_new_tokens`` 1e9 generates until killed. ``--model_size_limit_factor N`` multiplies every bound.

MODEL_SIZE_LIMITS: dict[str, tuple[int, str]] = {
    "lora_r": (4_096, "LoRA rank (adapter weights grow with it)"),
    "lora_alpha": (1_000_000, "LoRA scale"),
    "hidden": (65_536, "projector hidden width (weights grow with it times the LLM's width)"),
    "dim": (16_384, "encoder width (weights grow with its square)"),
    "proj_dim": (16_384, "encoder projection width"),
    "width": (16_384, "encoder width (weights grow with its square)"),
    "depth": (256, "encoder depth (weights grow with it)"),
    "num_tokens": (4_096, "ECG tokens per segment (memory grows with it)"),
    "min_ecg_tokens": (1_000_000, "ECG tokens kept when cutting a prompt"),
    "max_length": (1_000_000, "tokens per training sequence (memory grows with it)"),
    "max_text_len": (1_000_000, "text tokens of the text encoder"),
    "patch_size": (100_000, "samples per patch (weights grow with it)"),
    "in_leads": (1_024, "input leads"),
}
"""Option name (anywhere under ``model``) -> (largest value accepted, what grows with it)."""
MAX_NEW_TOKENS = 8_192
"""Largest ``eval.max_new_tokens`` (and ``chat --max_new_tokens``): generation time grows with it."""
MODEL_SIZE_FLAG = "--model_size_limit_factor"
_model_size_factor = 1.0


def set_model_size_factor(factor: float) -> None:
    """Multiply every model-size bound by ``factor`` (>= 1): a config with such sizes allocates that much memory."""
    global _model_size_factor
    if not (isinstance(factor, int | float) and factor >= 1 and factor == factor):
        raise DataError(f"{MODEL_SIZE_FLAG} must be a number >= 1, got {factor!r}")
    _model_size_factor = float(factor)


def _size_problem(key: str, value: Any, bound: int, what: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    limit = int(bound * _model_size_factor)
    if value > limit:
        return (f"{key} = {short_repr(value)} is above the limit {limit:,} ({what}); raise the limit with "
                f"{MODEL_SIZE_FLAG} N only for a config you trust: the model allocates its weights from these sizes "
                "before anything else is checked, which can exhaust memory")
    return None


def check_model_sizes(config: Any, where: str) -> None:
    """Refuse (one DataError listing every problem, naming ``where``) a run config (as a dict) whose model sizes or
    ``eval.max_new_tokens`` exceed the bounds above."""
    if not isinstance(config, dict):
        return
    check_structure(config, where)
    problems = []
    stack: list[tuple[str, Any]] = [("model", config.get("model"))]
    while stack:
        prefix, node = stack.pop()
        if isinstance(node, dict):
            stack.extend((f"{prefix}.{k}", v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((f"{prefix}[{i}]", v) for i, v in enumerate(node))
        else:
            name = prefix.rsplit(".", 1)[-1]
            if name in MODEL_SIZE_LIMITS and (p := _size_problem(prefix, node, *MODEL_SIZE_LIMITS[name])):
                problems.append(p)
    ev = config.get("eval")
    if isinstance(ev, dict) and (p := _size_problem("eval.max_new_tokens", ev.get("max_new_tokens"), MAX_NEW_TOKENS,
                                                    "answer length: generation time grows with it")):  # fmt: skip
        problems.append(p)
    if problems:
        raise DataError(f"{where}: " + "; ".join(sorted(problems)))


def check_max_new_tokens(value: int, where: str) -> None:
    """Refuse an answer length above ``MAX_NEW_TOKENS`` (times the factor)."""
    p = _size_problem("max_new_tokens", value, MAX_NEW_TOKENS, "answer length: generation time grows with it")
    if p:
        raise DataError(f"{where}: {p}")

# ---------------------------------------------------------------- sweeps (ecg_bench.sweep)

MAX_SWEEP_CELLS = 1000
"""Cells a sweep grid may make unless ``ecg-bench sweep --max_cells N`` raises it. Each cell is a whole
training run (a folder of checkpoints and results, hours of a GPU on a real model), and a grid's axes
multiply: five axes of four values are 1,024 cells. The cells are counted from the axes and include
rules BEFORE any is built or checked (building a config takes milliseconds; a million take hours), and
a refusal says the count and an estimate of the work. Raising it risks days of compute and disk filled
with run folders started by one mistyped axis."""
SWEEP_CELLS_RISK = "days of compute and a disk filled with run folders from one mistyped axis"
"""What raising ``MAX_SWEEP_CELLS`` risks (said by the refusal and by ``--max_cells``'s help)."""
