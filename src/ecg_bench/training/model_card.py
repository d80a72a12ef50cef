"""The model card (``README.md``) every checkpoint carries, filled from what the checkpoint knows.

Written at save time (no metrics yet: the run evaluates after training) and again by
``ecg_bench.inference.push_to_hub`` with the metrics and their 95 % CIs from a ``results.json``. It replaces
the empty card PEFT writes into ``adapter/`` (whose ``base_model`` is a local path): the base LLM is named by
its hub id or its ecg-bench short name, never by a path on the machine that trained it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ecg_bench.config import RunConfig, describe_options
from ecg_bench.data.contract import PreprocessingContract
from ecg_bench.models.elm import ELMS
from ecg_bench.models.llm import RANDOM_INIT, base_model
from ecg_bench.safe_files import read_json_file

CARD_FILE = "README.md"

def render_card(
    cfg: RunConfig,
    contract: PreprocessingContract,
    results: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    step: int | None = None,
    location: str = "CHECKPOINT_DIR",
) -> str:
    """The card's Markdown. ``results`` is a results.json, ``training`` a training_data.json, ``step`` the
    optimizer steps trained, ``location`` how a reader names this model (a hub id or a folder)."""
    m, d = cfg.model, cfg.data
    hub_id, llm_name = base_model(m.llm)
    tags = ["ecg", "electrocardiogram", "ecg-language-model", "ecg-bench", m.elm.type]
    front = ["---", "library_name: ecg-bench", f"tags: [{', '.join(tags)}]"]
    if hub_id:
        front.append(f"base_model: {hub_id}")
    front.append("---")
    lines = [*front, "", f"# ECG-language model: {m.elm.type} on {hub_id or m.llm}", ""]
    lines += ["An LLM that reads a 12-lead ECG and answers questions about it in text, trained and evaluated with",
              "ECG-Bench on patient-disjoint folds.", ""]  # fmt: skip
    lines += ["## Model", "", "| | |", "| --- | --- |", f"| base LLM | {llm_name} |"]
    lines += [f"| {label} | {text} |" for label, text in ELMS.get(m.elm.type)().card_rows(m)]  # the family describes itself
    lines.append(f"| representation | {describe_options(m.representation)} |")
    lines.append(f"| fine-tuning | {_tuning(cfg)} |")
    if step is not None:
        lines.append(f"| training | {step} optimizer steps of {cfg.train.batch_size * cfg.train.grad_accum_steps} "
                     f"conversations, lr {cfg.train.lr:g} |")  # fmt: skip
    lines += ["", "## Data", "", "| | |", "| --- | --- |", f"| ECG source | {describe_options(d.source)} |",
              f"| conversations | {_mapped(cfg)} |"]  # fmt: skip
    fold = training or {}
    lines.append(f"| test fold | {fold.get('fold', d.fold)} of {fold.get('num_folds', d.num_folds)} patient-disjoint folds "
                 f"(data seed {fold.get('seed', d.seed)}); trained on the others |")  # fmt: skip
    if "num_items" in fold:
        patients = len(fold.get("patients_sha256_16", []))
        lines.append(f"| training data | {fold['num_items']} conversations of {patients} patients |")
    lines += ["", "## Evaluation", ""] + _metrics(results)
    lines += ["", "## Preprocessing (the contract in `preprocessing.json`)", ""] + _contract(contract)
    lines += ["", "## How to use", "", "```bash",
              f"ecg-bench chat --checkpoint {location} --ecg RECORD.hea --question \"Is the rhythm regular?\"", "```", "",
              "```python", "from ecg_bench import from_pretrained", "",
              f"model = from_pretrained({location!r})",
              "print(model.ask(\"RECORD.hea\", \"Is the rhythm regular?\"))  # a WFDB record, CinC .mat, .npy + fs=...",
              "```", ""]  # fmt: skip
    lines += ["`from_pretrained` needs only this folder: the run config (`config.json`), the ELM's dimensions and "
              "vocabulary (`elm.json`), the preprocessing contract, the trained weights (safetensors) and, for "
              "`ecg_byte`, the ECG-Byte tokenizer; the base LLM is loaded by its name.", ""]  # fmt: skip
    return "\n".join(lines)


def _tuning(cfg: RunConfig) -> str:
    m = cfg.model
    if m.full_finetune:
        return "full fine-tuning of every LLM weight (saved in `llm/`)"
    if m.lora:
        return f"LoRA r={m.lora_r}, alpha={m.lora_alpha} on {', '.join(m.lora_target_modules)} (`adapter/`); LLM frozen"
    return "LLM frozen; only the ECG modules trained"


def _mapped(cfg: RunConfig) -> str:
    d = cfg.data
    if d.hf_dataset:
        return f"Hugging Face dataset `{Path(d.hf_dataset).name if Path(d.hf_dataset).exists() else d.hf_dataset}`"
    if d.mix:
        return "mix of " + ", ".join(describe_options(n) for n in d.mix)
    return describe_options(d.mapped)


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}" if isinstance(x, int | float) and math.isfinite(x) else "n/a"


def _metrics(results: dict[str, Any] | None) -> list[str]:
    conditions = (results or {}).get("conditions") or {}
    if not conditions:
        return ["No evaluation attached yet: `ecg_bench.inference.push_to_hub` fills this section from a results.json."]
    rows = ["| condition | metric | value (%) | 95 % CI | answers (patients) |", "| --- | --- | --- | --- | --- |"]
    for cond, r in conditions.items():
        ci = r.get("ci95", {})
        for key, value in (r.get("metrics") or {}).items():
            low, high = (ci.get(key) or [None, None])[:2]
            rows.append(f"| {cond} | {key} | {_pct(value)} | {_pct(low)}-{_pct(high)} | "
                        f"{r.get('num_samples', '?')} ({r.get('clusters', '?')}) |")  # fmt: skip
    cfg = (results or {}).get("config", {}).get("data", {})
    where = f"fold {cfg.get('fold', '?')} of {cfg.get('num_folds', '?')}" if cfg else "the test fold"
    return [f"On {where} (patients never seen in training). `zeros` feeds an all-zero ECG and `no_signal` none: a "
            "model that uses the ECG scores clearly lower under them. 95 % CIs from a bootstrap resampling patients.",
            "", *rows]  # fmt: skip


def _contract(c: PreprocessingContract) -> list[str]:
    return [
        f"- leads, in this order: {' '.join(c.leads)} (matched by name; all 12 are needed)",
        f"- units: {c.units}; NaN gaps up to {c.max_nan_gap_s:g} s interpolated, longer gaps and flat leads refused",
        f"- resampled to {c.fs:g} Hz: {c.resample}",
        f"- filters: {', '.join(c.filters) or 'none'}",
        f"- segments of {c.segment_len} samples ({c.segment_seconds:g} s): {c.segmenting}",
        f"- representation: {describe_options(c.representation_config())}",
    ]


def write_card(folder: str | Path, cfg: RunConfig, contract: PreprocessingContract, results: dict[str, Any] | None = None,
               location: str = "CHECKPOINT_DIR") -> Path:  # fmt: skip
    """Write ``README.md`` into a checkpoint folder from its own files (training_data.json, trainer_state.json)."""
    folder = Path(folder)
    training = _json(folder / "training_data.json")
    state = _json(folder / "trainer_state.json") or {}
    step = state.get("step") if isinstance(state.get("step"), int) else None
    path = folder / CARD_FILE
    path.write_text(render_card(cfg, contract, results, training, step, location))
    return path


def _json(path: Path) -> dict[str, Any] | None:
    from ecg_bench.errors import DataError
    from ecg_bench.safe_files import read_json_file

    if not path.is_file():
        return None
    try:
        value = read_json_file(path, "JSON object")
    except DataError:
        return None
    return value if isinstance(value, dict) else None


def replace_peft_card(folder: str | Path, cfg: RunConfig) -> None:
    """PEFT's ``adapter/README.md`` is an empty template naming a local path as base model: remove it (this
    checkpoint's own card is ``README.md``) and name the base LLM in ``adapter_config.json`` the same way."""
    adapter = Path(folder) / "adapter"
    (adapter / CARD_FILE).unlink(missing_ok=True)
    conf = adapter / "adapter_config.json"
    if conf.is_file():
        d = read_json_file(conf, "adapter config (JSON object)")
        hub_id, _ = base_model(cfg.model.llm)
        if hub_id or cfg.model.llm in RANDOM_INIT:
            d["base_model_name_or_path"] = hub_id or cfg.model.llm
        conf.write_text(json.dumps(d, indent=2) + "\n")
