"""Every bound ECG-Bench checks BEFORE work or memory is spent on an untrusted input, with its reason.

A small hostile file can claim or imply a huge amount of work: a 2 kB HDF5 file whose dataset claims
400 million samples per lead, a 413-byte YAML grid whose aliases nest nine levels deep, a 1.9 MB
deflated ``.pth`` that inflates to gigabytes, a 229-byte pickle whose lists share references and
expand to 2^30 nodes when anything walks them, a JSON document nested 200,000 deep that breaks every
recursive walk. Each reader checks what the file CLAIMS (header sizes, shapes, declared member sizes,
alias expansions) against the limits below before it reads or allocates, and refuses with a
DataError naming the file, the value and the limit.

The limits live here, one :class:`Limit` each with the reason for its default and the risk of raising
it (``LIMITS``; ``limits_table()`` renders them as the documentation's table). A user raises one with
the environment variable that names it, ``ECG_BENCH_<NAME>`` (e.g.
``ECG_BENCH_MAX_RECORD_VALUES=268435456``): the variable names the limit, and every refusal names the
variable and the risk taken by raising it (memory, time, or accepting corrupt data). A variable that is
not a positive number is refused (ConfigError) when the limit is read.

Structures: ``read_bytes_capped`` refuses a file larger than its cap before reading it,
``check_structure`` walks a loaded structure ITERATIVELY, counting every visit (a shared list is
counted again at each reference, so a DAG that expands exponentially is refused after ``max_nodes``
steps, not walked), ``load_json_file`` reads a JSON file with both, and ``load_config_file`` reads
every YAML or JSON document a user hands the tool (run configs, recipes, sweep grids): size capped,
YAML aliases counted as the nodes they expand to BEFORE the document is built (a recursive alias is
refused), nesting and node count bounded. Messages use type names and ``reprlib``-shortened values
only, never a full repr.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecg_bench.errors import ConfigError, DataError

ENV_PREFIX = "ECG_BENCH_"
"""A limit ``NAME`` is raised (or lowered) with the environment variable ``ECG_BENCH_NAME``."""

MEMORY = "memory exhaustion: the process may be killed by the kernel"
TIME = "long runs of work on one input"
CORRUPT = "accepting corrupt or mislabelled data into a dataset"


@dataclass(frozen=True)
class Limit:
    """One bound: its name (``ECG_BENCH_<name>`` raises it), default, what it bounds, why, and what raising it risks."""

    name: str
    default: int | float
    bounds: str
    """What is bounded (one line, for the documentation's table)."""
    reason: str
    """Why the default is what it is."""
    risk: str
    """What a user risks by raising it."""
    unit: str = ""

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.name}"

    def value(self) -> int | float:
        """The limit in force: ``ECG_BENCH_<name>`` when set (a positive number), else the default."""
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            v = float(raw)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and v > 0):
            raise ConfigError([f"environment variable {self.env}={raw!r}: expected a positive number ({self.bounds})"])
        return int(v) if isinstance(self.default, int) else v

    def hint(self) -> str:
        """The clause a refusal ends with: which variable raises the limit and at what risk."""
        return f"raise it with {self.env}=N at the risk of {self.risk}"


LIMITS: dict[str, Limit] = {}
"""Every limit by name, in the order of the documentation's table."""


def _limit(name: str, default: int | float, bounds: str, reason: str, risk: str, unit: str = "") -> int | float:
    LIMITS[name] = Limit(name, default, bounds, reason, risk, unit)
    return default


def limit(name: str) -> Any:
    """The value in force of limit ``name`` (its default unless ``ECG_BENCH_<name>`` is set)."""
    return LIMITS[name].value()


def hint(name: str) -> str:
    """``"raise it with ECG_BENCH_<name>=N at the risk of ..."`` for a refusal message."""
    return LIMITS[name].hint()


def limits_table() -> str:
    """The limits as a markdown table: what is bounded | default | how to raise (and the risk)."""
    rows = ["| what is bounded | default | how to raise | why this default |", "| --- | --- | --- | --- |"]
    for lim in LIMITS.values():
        default = f"{lim.default:,}" + (f" {lim.unit}" if lim.unit else "")
        rows.append(f"| {lim.bounds} | {default} | `{lim.env}=N` (risk: {lim.risk}) | {lim.reason} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- structured documents (JSON, YAML)

MAX_DEPTH = _limit("MAX_DEPTH", 64, "nesting depth of a JSON or YAML document",
                   "the project's documents nest a few levels; deeper ones break recursive walks", TIME)  # fmt: skip
MAX_NODES = _limit("MAX_NODES", 10_000_000, "values in one JSON document (every reference to a shared container counted)",
                   "results and vocabularies hold up to ~1M values; shared references can expand exponentially",
                   MEMORY)  # fmt: skip
MAX_STRING = _limit("MAX_STRING", 16 * 1024 * 1024, "length of one string in a JSON or YAML document",
                    "reports and answers are kB", MEMORY, "characters")  # fmt: skip
MAX_JSON_BYTES = _limit("MAX_JSON_BYTES", 256 * 1024 * 1024, "size of a JSON document read whole",
                        "results.json of a large evaluation is tens of MB", MEMORY, "bytes")  # fmt: skip
MAX_CONFIG_BYTES = _limit("MAX_CONFIG_BYTES", 4 * 1024 * 1024, "size of a run config, recipe or sweep grid (.yaml/.yml/.json)",
                          "a config or grid is a few kB", MEMORY, "bytes")  # fmt: skip
MAX_CONFIG_NODES = _limit("MAX_CONFIG_NODES", 1_000_000, "values in a run config, recipe or sweep grid, YAML aliases "
                          "counted as the values they expand to", "a config has hundreds of values, a grid thousands; "
                          "nine nested aliases in 413 bytes expand to billions", MEMORY)  # fmt: skip

# ---------------------------------------------------------------- ECG records (signals.io, data.ecg_file, sources)

MAX_LEADS = _limit("MAX_LEADS", 64, "signals (leads) of one record", "12-lead ECGs, Holter and EP studies stay well below",
                   MEMORY)  # fmt: skip
MAX_RECORD_VALUES = _limit("MAX_RECORD_VALUES", 2**26, "samples x leads of one record (header, HDF5 row, .mat, .npy, .csv)",
                           "24 h of 2 leads at 360 Hz or 6 h of 12 leads at 250 Hz (~0.5 GB as float64)", MEMORY)  # fmt: skip
MAX_HEADER_BYTES = _limit("MAX_HEADER_BYTES", 1024 * 1024, "size of a WFDB / CinC .hea header read",
                          "a 12-lead header is under 2 kB", MEMORY, "bytes")  # fmt: skip
MAX_CSV_BYTES = _limit("MAX_CSV_BYTES", 64 * 1024 * 1024, "size of a .csv ECG array read (parsed whole before its shape is known)",
                       "a 10 s, 12-lead, 500 Hz record is under 1 MB of text; 64 MB parse to at most ~260 MB of float64",
                       MEMORY, "bytes")  # fmt: skip
MAX_HDF5_ROWS = _limit("MAX_HDF5_ROWS", 2**24, "exams (rows) of one HDF5 file",
                       "a CODE-15% part holds ~20,000 exams; its exam ids are read whole", MEMORY)  # fmt: skip
MAX_HDF5_CHUNK_BYTES = _limit("MAX_HDF5_CHUNK_BYTES", 256 * 1024 * 1024, "bytes of one HDF5 chunk (decompressed whole to "
                              "read any row in it)", "CODE-15% chunks are a few MB", MEMORY, "bytes")  # fmt: skip
MAX_SAMPLING_RATE = _limit("MAX_SAMPLING_RATE", 20_000.0, "sampling rate a record header or a caller may state",
                           "ECG recorders sample at 100 Hz to 10 kHz; resampling cost grows with the rate",
                           TIME, "Hz")  # fmt: skip
MAX_ABS_MV = _limit("MAX_ABS_MV", 500.0, "absolute amplitude of a sample, in mV",
                    "surface ECGs stay within tens of mV (16-bit rails at gain 200/mV are 164 mV); larger values are "
                    "corrupt or in the wrong units", CORRUPT, "mV")  # fmt: skip

# ---------------------------------------------------------------- weight archives (torch .pth / zip)

MAX_ARCHIVE_MEMBERS = _limit("MAX_ARCHIVE_MEMBERS", 100_000, "members of a .pth (zip) archive",
                             "a released encoder has a few hundred tensors", TIME)  # fmt: skip
MAX_ARCHIVE_BYTES = _limit("MAX_ARCHIVE_BYTES", 4 * 1024**3, "declared uncompressed size of a .pth (zip) archive",
                           "released ECG encoders are under 1 GB", MEMORY, "bytes")  # fmt: skip
MAX_COMPRESSION_RATIO = _limit("MAX_COMPRESSION_RATIO", 20.0, "declared uncompressed size of a .pth archive / its size on disk",
                               "torch.save stores tensors uncompressed and float weights deflate by ~1.1x; a zip bomb "
                               "inflates 1,000x", MEMORY)  # fmt: skip
MAX_PICKLE_BYTES = _limit("MAX_PICKLE_BYTES", 64 * 1024 * 1024, "size of the pickled index (data.pkl) of a .pth archive",
                          "it lists tensor names and shapes, kB to a few MB", MEMORY, "bytes")  # fmt: skip

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
    max_depth: int | None = None,
    max_nodes: int | None = None,
    max_string: int | None = None,
) -> int:
    """Walk ``obj`` (dict / list / tuple / set / scalars) iteratively and return its node count.

    Refused with a DataError naming ``where``: nesting deeper than ``max_depth``, more than
    ``max_nodes`` nodes (every visit counts: a container referenced twice is walked twice, so shared
    references that expand exponentially are stopped after ``max_nodes`` steps), a str / bytes longer
    than ``max_string``. Dict keys count as nodes. The walk is O(min(nodes, max_nodes)) and allocates
    only its stack (at most ``max_depth`` iterators). Limits left None are the ones in force
    (``MAX_DEPTH``, ``MAX_NODES``, ``MAX_STRING``).
    """
    max_depth = limit("MAX_DEPTH") if max_depth is None else max_depth
    max_nodes = limit("MAX_NODES") if max_nodes is None else max_nodes
    max_string = limit("MAX_STRING") if max_string is None else max_string
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
    max_bytes: int | None = None,
    max_depth: int | None = None,
    max_nodes: int | None = None,
    max_string: int | None = None,
) -> Any:
    """Parse a JSON file whose size, nesting and node count are bounded; every failure is a DataError naming it."""
    data = read_bytes_capped(path, limit("MAX_JSON_BYTES") if max_bytes is None else max_bytes, what)
    return parse_json(data, str(path), what, max_depth=max_depth, max_nodes=max_nodes, max_string=max_string)


def _no_constants(name: str):
    raise ValueError(f"the non-standard number {name} (none of our files writes NaN or Infinity)")


def parse_json(
    text: str | bytes,
    where: str,
    what: str = "JSON document",
    *,
    max_depth: int | None = None,
    max_nodes: int | None = None,
    max_string: int | None = None,
) -> Any:
    """``json.loads`` whose errors (bad syntax, bad encoding, nesting past Python's recursion limit) are DataErrors."""
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        depth = limit("MAX_DEPTH") if max_depth is None else max_depth
        raise DataError(f"{where}: {what} nested too deeply to parse (at most {depth} levels are accepted)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: expected a {what}, got invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: expected a UTF-8 {what}, got undecodable bytes ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # _no_constants
        raise DataError(f"{where}: expected a {what}, got {e}") from None
    check_structure(obj, where, max_depth=max_depth, max_nodes=max_nodes, max_string=max_string)
    return obj


def parse_yaml(
    text: str | bytes,
    where: str,
    what: str = "YAML document",
    *,
    max_depth: int | None = None,
    max_nodes: int | None = None,
    max_string: int | None = None,
) -> Any:
    """``yaml.safe_load`` with aliases counted BEFORE the document is built; every failure a DataError naming ``where``.

    The document is composed into its node graph first (aliases are references there, so composing is linear in the
    text); the graph's EXPANDED size (each alias, merge key ``<<`` included, counted as the nodes it stands for) is
    computed iteratively over the graph and refused past ``max_nodes``, a recursive alias and nesting past
    ``max_depth`` are refused, and only then are Python objects constructed (then ``check_structure``)."""
    import yaml

    max_depth = limit("MAX_DEPTH") if max_depth is None else max_depth
    max_nodes = limit("MAX_CONFIG_NODES") if max_nodes is None else max_nodes
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_yaml_graph(node, where, max_depth, max_nodes)
            obj = loader.construct_document(node)
        finally:
            loader.dispose()
    except RecursionError:
        raise DataError(f"{where}: {what} nested too deeply to parse (at most {max_depth} levels are accepted)") from None
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise DataError(f"{where}: not a readable YAML document, expected a {what} ({msg[:300]})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: expected a UTF-8 {what}, got undecodable bytes ({e.reason} at byte {e.start})") from None
    check_structure(obj, where, max_depth=max_depth, max_nodes=max_nodes, max_string=max_string)
    return obj


def _check_yaml_graph(root: Any, where: str, max_depth: int, max_nodes: int) -> None:
    """Refuse a YAML node graph that expands past ``max_nodes`` nodes, nests past ``max_depth`` or refers to itself.

    Post-order walk with one size per distinct node (memoised by identity): O(distinct nodes), whatever the expansion."""
    import yaml

    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.SequenceNode):
            return node.value
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        return []

    def too_many() -> DataError:
        return DataError(f"{where}: expands to more than {max_nodes:,} values (each YAML alias counted as the values it "
                         f"stands for); refused before it is built ({hint('MAX_CONFIG_NODES')})")  # fmt: skip

    sizes: dict[int, int] = {}
    stack: list[list[Any]] = [[root, iter(children(root)), 1]]  # [node, iterator over its children, size so far]
    on_path = {id(root)}
    while stack:
        top = stack[-1]
        child = next(top[1], None)
        if child is None:
            stack.pop()
            on_path.discard(id(top[0]))
            sizes[id(top[0])] = top[2]
            if stack:
                stack[-1][2] += top[2]
                if stack[-1][2] > max_nodes:
                    raise too_many()
            continue
        if id(child) in on_path:
            raise DataError(f"{where}: a YAML alias refers to a node that contains it (a recursive document); not read")
        known = sizes.get(id(child))
        if known is None and not children(child):
            known = sizes[id(child)] = 1
        if known is not None:
            top[2] += known
            if top[2] > max_nodes:
                raise too_many()
            continue
        if len(stack) >= max_depth:
            raise DataError(f"{where}: nested deeper than {max_depth} levels; not read")
        stack.append([child, iter(children(child)), 1])
        on_path.add(id(child))


def load_config_file(path: str | Path, what: str = "config file") -> Any:
    """The document in a ``.yaml`` / ``.yml`` / ``.json`` file a user hands the tool (run config, recipe, sweep grid).

    Size capped (``MAX_CONFIG_BYTES``) before it is read, YAML aliases counted before the document is built,
    nesting and values bounded (``MAX_DEPTH``, ``MAX_CONFIG_NODES``, ``MAX_STRING``); FileNotFoundError naming a
    missing file, DataError naming the file for everything else. An empty YAML file is None."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    max_bytes = limit("MAX_CONFIG_BYTES")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"{path}: {size:,} bytes, more than the {max_bytes:,} a {what} may have; not read "
                        f"({hint('MAX_CONFIG_BYTES')})")  # fmt: skip
    data = read_bytes_capped(path, max_bytes, what)
    if path.suffix.lower() in (".yaml", ".yml"):
        return parse_yaml(data, str(path), what)
    return parse_json(data, str(path), f"{what} (JSON object)", max_nodes=limit("MAX_CONFIG_NODES"))


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
