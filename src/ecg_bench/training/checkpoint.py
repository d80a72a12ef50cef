"""Checkpoints as folders holding only what was trained, in safe formats.

```
<dir>/config.json            the run config
<dir>/adapter/               PEFT adapter (adapter_config.json + adapter_model.safetensors), when LoRA
<dir>/llm/                   full LLM weights (safetensors), only when the LLM was fully fine-tuned
<dir>/projector.safetensors  always
<dir>/encoder.safetensors    when the encoder was trained
<dir>/<name>.safetensors     any other module the ELM lists in trainable_modules() (token ELM: ecg_vocab)
<dir>/<extra files>          what the ELM writes with save_extra(dir) (token ELM: the ECG-Byte tokenizer)
<dir>/optimizer.safetensors  AdamW moments keyed by parameter name (for resuming)
<dir>/trainer_state.json     step, learning-rate schedule position, loss history
```

Nothing is pickled and nothing is ``torch.load``-ed: a checkpoint from someone else cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ecg_bench import folders
from ecg_bench.config import RunConfig
from ecg_bench.errors import DataError
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

STATE_FILE = "trainer_state.json"
TRAINING_DATA_FILE = "training_data.json"
"""Fold, folds digest and hashed patient ids of the training data (evaluation refuses those patients)."""


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def _named_trainable(elm) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in elm.named_parameters() if p.requires_grad}


def save_checkpoint(
    path: str | Path, elm, cfg: RunConfig, optimizer=None, state: dict[str, Any] | None = None, json_files: dict | None = None
) -> Path:
    """Write a checkpoint folder atomically (a killed save never leaves a half-written checkpoint).

    Only a missing or empty folder, or a checkpoint ecg-bench made, is replaced (``ecg_bench.folders``).
    ``json_files`` (name -> JSON-serialisable value) are written into it too (e.g. training_data.json).
    """
    path = Path(path)
    folders.check_replaceable(path, "checkpoint")
    tmp = folders.make_temp(path, "checkpoint")
    cfg.save(tmp / "config.json")
    for name, value in (json_files or {}).items():
        (tmp / name).write_text(json.dumps(value, indent=2) + "\n")
    llm = elm.llm
    if cfg.model.full_finetune:
        llm.save_pretrained(tmp / "llm", safe_serialization=True)
    elif _is_peft(llm):
        llm.save_pretrained(tmp / "adapter")
    for name, module in elm.trainable_modules().items():
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp / f"{name}.safetensors"))
    if hasattr(elm, "save_extra"):
        elm.save_extra(tmp)
    if optimizer is not None:
        save_file(_optimizer_tensors(elm, optimizer), str(tmp / "optimizer.safetensors"))
    (tmp / STATE_FILE).write_text(json.dumps(state or {}, indent=2) + "\n")
    folders.replace(tmp, path, "checkpoint")
    log.info("saved checkpoint %s", path)
    return path


def _optimizer_tensors(elm, optimizer) -> dict[str, torch.Tensor]:
    name_of = {id(p): n for n, p in _named_trainable(elm).items()}
    out = {}
    for p, st in optimizer.state.items():
        for k, v in st.items():
            out[f"{name_of[id(p)]}::{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    return out


def load_checkpoint(path: str | Path, elm, optimizer=None) -> dict[str, Any]:
    """Load trained weights (and optimizer moments) into a freshly built ELM; return the trainer state."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"not a checkpoint folder (no config.json): {path}")
    if hasattr(elm, "check_extra"):
        elm.check_extra(path)  # the token ELM refuses a checkpoint made with another ECG vocabulary
    if (path / "adapter").exists():
        from peft import set_peft_model_state_dict

        adapter = path / "adapter" / "adapter_model.safetensors"
        if not adapter.exists():
            raise FileNotFoundError(f"adapter weights missing: {adapter}")
        res = set_peft_model_state_dict(elm.llm, load_file(str(adapter)))
        if getattr(res, "unexpected_keys", None):
            raise DataError(f"{adapter}: keys that fit no LoRA layer of this model: {res.unexpected_keys[:5]}")
    if (path / "llm").exists():
        files = sorted((path / "llm").glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors weights in {path / 'llm'}")
        sd = {k: v for f in files for k, v in load_file(str(f)).items()}
        missing, unexpected = elm.llm.load_state_dict(sd, strict=False)
        tied = {"lm_head.weight"} if getattr(elm.llm.config, "tie_word_embeddings", False) else set()
        if unexpected or set(missing) - tied:
            extra = sorted(set(missing) - tied)[:5]
            raise DataError(
                f"{path / 'llm'} does not fit the LLM built from the config: missing {extra}, unexpected {unexpected[:5]}"
            )
    for name in dict.fromkeys(("projector", "encoder", *elm.trainable_modules())):
        f = path / f"{name}.safetensors"
        if f.exists():
            module = getattr(elm, name)
            try:
                module.load_state_dict(load_file(str(f)))
            except RuntimeError as e:
                raise DataError(f"{f} does not fit the {name} built from the config: {e}") from e
    if optimizer is not None and (path / "optimizer.safetensors").exists():
        _load_optimizer(elm, optimizer, load_file(str(path / "optimizer.safetensors")))
    state_file = path / STATE_FILE
    return json.loads(state_file.read_text()) if state_file.exists() else {}


def _load_optimizer(elm, optimizer, tensors: dict[str, torch.Tensor]) -> None:
    params = _named_trainable(elm)
    for key, value in tensors.items():
        name, field = key.split("::")
        if name not in params:
            raise DataError(f"optimizer state for unknown parameter {name!r}")
        p = params[name]
        optimizer.state[p][field] = value.to(p.device) if field != "step" else value
