"""Checkpoints as folders holding only what was trained, in safe formats.

```
<dir>/config.json            the run config
<dir>/elm.json               ELM family, input dimensions, vocabulary (``ELM.manifest()``): rebuilt without the data
<dir>/preprocessing.json     the preprocessing contract (``data.contract``): fs, segment length, leads, units, ...
<dir>/README.md              the model card (``training.model_card``; metrics added by ``inference.push_to_hub``)
<dir>/adapter/               PEFT adapter (adapter_config.json + adapter_model.safetensors), when LoRA
<dir>/llm/                   full LLM weights (safetensors), only when the LLM was fully fine-tuned
<dir>/projector.safetensors  always
<dir>/encoder.safetensors    when the encoder was trained
<dir>/<name>.safetensors     any other module the ELM lists in trainable_modules() (token ELM: ecg_vocab)
<dir>/<extra files>          what the ELM writes with save_extra(dir): the files its family and its encoder are built
                             from (token ELM: the ECG-Byte tokenizer; a pretrained encoder: encoder_weights/)
<dir>/optimizer.safetensors  AdamW moments keyed by parameter name (for resuming)
<dir>/trainer_state.json     step, learning-rate schedule position, loss history
<dir>/rng_state.json         python ``random`` and numpy global RNG states (for an exact resume, dropout included)
<dir>/rng_state.safetensors  torch CPU RNG state and one per CUDA device, as uint8 tensors
<dir>/rng_state.rank<r>.*    the same for rank r > 0 of a run with several processes
<dir>/manifest.json          every file above with its size, sha256 and tensors (``training.manifest``), written last
```

A save builds ``<dir>.tmp-<pid>`` and renames it onto ``<dir>`` when ``manifest.json`` is written; a save that
fails (a full disk) removes its ``.tmp-`` folder and says why, and the next save removes those left by killed
processes. Every load starts with ``training.manifest.verify_checkpoint``: a file missing, cut short or changed
is refused by name before any weight is read.

With several processes (``training.distributed``) every rank takes part in gathering what is sharded
(FSDP parameters and AdamW moments are gathered whole, so the folder looks the same whatever the
strategy and world size) and only rank 0 writes; the others wait for it. Any world size resumes from
any checkpoint: rank r restores its own RNG state when the checkpoint has one, else rank 0's.

Nothing is pickled and nothing is ``torch.load``-ed: a checkpoint from someone else cannot run code.
Every file is read through :mod:`ecg_bench.safe_files`: a garbage, truncated or forged file, a tensor of
the wrong shape or a NaN weight is a :class:`DataError` naming the file (and tensor), never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ecg_bench import folders
from ecg_bench.config import RunConfig
from ecg_bench.data.contract import PreprocessingContract
from ecg_bench.data.shards import remove_stale_temporaries
from ecg_bench.errors import CheckpointError, DataError
from ecg_bench.limits import check_model_sizes
from ecg_bench.logging_utils import get_logger
from ecg_bench.safe_files import load_safetensors, read_json_file
from ecg_bench.training import distributed
from ecg_bench.training.distributed import full_tensor, like_param
from ecg_bench.training.manifest import verify_checkpoint, write_manifest
from ecg_bench.training.model_card import replace_peft_card, write_card

log = get_logger(__name__)

STATE_FILE = "trainer_state.json"
TRAINING_DATA_FILE = "training_data.json"
"""Fold, folds digest and hashed patient ids of the training data (evaluation refuses those patients)."""
MANIFEST_FILE = "elm.json"
"""``ELM.manifest()``: family, input dimensions and vocabulary, for rebuilding the ELM without its data."""
RNG_JSON = "rng_state.json"
RNG_TENSORS = "rng_state.safetensors"


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
    # every rank gathers (collectives, in the same order everywhere); rank 0 alone writes
    llm_state = _gathered_llm_state(elm, cfg)
    modules = {name: {k: full_tensor(v).detach().cpu().contiguous() for k, v in module.state_dict().items()}
               for name, module in elm.trainable_modules().items()}  # fmt: skip
    opt = _optimizer_tensors(elm, optimizer) if optimizer is not None else None
    rng = distributed.all_gather_object(rng_state())  # saving draws no random numbers: the state after the last step

    def write() -> Path:
        folders.check_replaceable(path, "checkpoint")
        path.parent.mkdir(parents=True, exist_ok=True)
        for pattern in (f"*{TMP}*", "*.old-*"):  # saves of killed runs (ours, marked, their process gone)
            remove_stale_temporaries(path.parent, pattern)
        tmp = folders.make_temp(path, "checkpoint")
        try:
            _write_files(tmp)
        except BaseException as e:
            folders.remove(tmp, "checkpoint", ignore_errors=True)
            if isinstance(e, OSError | SafetensorError):
                raise CheckpointError(f"could not save checkpoint {path}: {_why(e)}; the unfinished copy was removed, "
                                      "nothing was replaced") from None  # fmt: skip
            raise
        folders.replace(tmp, path, "checkpoint")
        log.info("saved checkpoint %s", path)
        return path

    def _write_files(tmp: Path) -> None:
        cfg.save(tmp / "config.json")
        for name, value in (json_files or {}).items():
            (tmp / name).write_text(json.dumps(value, indent=2) + "\n")
        llm = elm.llm
        if cfg.model.full_finetune:
            llm.save_pretrained(tmp / "llm", safe_serialization=True, state_dict=llm_state)
        elif _is_peft(llm):
            llm.save_pretrained(tmp / "adapter", state_dict=llm_state)
        for name, tensors in modules.items():
            save_file(tensors, str(tmp / f"{name}.safetensors"))
        if hasattr(elm, "save_extra"):
            elm.save_extra(tmp)
        if hasattr(elm, "manifest"):
            (tmp / MANIFEST_FILE).write_text(json.dumps(elm.manifest(), indent=2) + "\n")
        contract = PreprocessingContract.from_run_config(cfg)
        contract.write(tmp)
        for rank, (doc, tensors) in enumerate(rng):
            write_rng_state(tmp, doc, tensors, rank)
        if opt is not None:
            save_file(opt, str(tmp / "optimizer.safetensors"))
        (tmp / STATE_FILE).write_text(json.dumps(state or {}, indent=2) + "\n")
        replace_peft_card(tmp, cfg)
        write_card(tmp, cfg, contract, location=str(path))
        write_manifest(tmp)  # last: a folder without it is not a checkpoint

    return distributed.main_first(write, f"saving checkpoint {path}")


TMP = ".tmp-"
"""A save builds ``<name>.tmp-<pid>`` (``folders.make_temp``) and renames it when every file is written."""


def _why(e: BaseException) -> str:
    """An OSError or SafetensorError as a sentence: what went wrong and, when known, on which file."""
    if isinstance(e, OSError):
        what = os.strerror(e.errno).lower() if e.errno else str(e)
        return f"{what} while writing {e.filename}" if e.filename else f"{what} ({e})"
    text = str(e)
    if "No space left" in text or "os error 28" in text:
        return f"no space left on device ({text})"
    return f"the safetensors writer failed ({text})"


def _is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def _gathered_llm_state(elm, cfg: RunConfig) -> dict[str, torch.Tensor] | None:
    """Under FSDP, the LLM tensors a checkpoint holds gathered whole (all of them when fully fine-tuned, else the
    trainable LoRA ones, which PEFT filters); None otherwise (``save_pretrained`` reads the model itself)."""
    llm = elm.llm
    if not _is_sharded(llm):
        return None
    if cfg.model.full_finetune:
        return {k: full_tensor(v).detach().cpu() for k, v in llm.state_dict().items()}
    return {n: full_tensor(p).detach().cpu() for n, p in llm.named_parameters() if p.requires_grad}


def _optimizer_tensors(elm, optimizer) -> dict[str, torch.Tensor]:
    name_of = {id(p): n for n, p in _named_trainable(elm).items()}
    out = {}
    for group in optimizer.param_groups:  # parameter order: the same on every rank (FSDP gathers collectively)
        for p in group["params"]:
            for k, v in sorted(optimizer.state.get(p, {}).items()):
                v = full_tensor(v) if torch.is_tensor(v) else torch.tensor(v)
                out[f"{name_of[id(p)]}::{k}"] = v.detach().cpu().contiguous()
    return out


def load_checkpoint(path: str | Path, elm, optimizer=None, max_steps: int | None = None) -> dict[str, Any]:
    """Load trained weights (and optimizer moments) into a freshly built ELM; return the trainer state.

    Every tensor is checked against the model built from the config (names and shapes) and for NaN/inf
    before anything is copied; ``max_steps`` bounds the step the trainer state may claim.
    """
    path = verify_checkpoint(path)
    state = read_trainer_state(path, max_steps)  # small and cheap: refuse a bad one before the weights
    if hasattr(elm, "check_extra"):
        elm.check_extra(path)  # the token ELM refuses a checkpoint made with another ECG vocabulary
    if (path / "adapter").exists():
        _load_adapter(path / "adapter", elm)
    if (path / "llm").exists():
        files = sorted((path / "llm").glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors weights in {path / 'llm'}")
        expected = _shapes(elm.llm.state_dict())
        sd = {}
        for f in files:
            tensors = load_safetensors(f)
            check_shapes(f, tensors, expected, "LLM", require_all=False)
            sd.update(tensors)
        missing, unexpected = elm.llm.load_state_dict(sd, strict=False)
        tied = {"lm_head.weight"} if getattr(elm.llm.config, "tie_word_embeddings", False) else set()
        if unexpected or set(missing) - tied:
            extra = sorted(set(missing) - tied)[:5]
            raise DataError(
                f"{path / 'llm'} does not fit the LLM built from the config: missing {extra}, unexpected {unexpected[:5]}"
            )
    trained = set(elm.trainable_modules())
    for name in dict.fromkeys(("projector", "encoder", *trained)):
        f = path / f"{name}.safetensors"
        if name in trained and not f.is_file():
            raise CheckpointError(f"{path}: {f.name} is missing, but the model built from its config trains {name}")
        if f.exists():
            module = getattr(elm, name)
            tensors = load_safetensors(f)
            check_shapes(f, tensors, _shapes(module.state_dict()), name)
            module.load_state_dict(tensors)
    if optimizer is not None:
        load_optimizer_state(path, elm, optimizer)
    return state


def load_optimizer_state(path: str | Path, elm, optimizer) -> None:
    """AdamW moments from ``path``/optimizer.safetensors (if there), sharded like their parameters under FSDP."""
    f = Path(path) / "optimizer.safetensors"
    if f.exists():
        _load_optimizer(elm, optimizer, load_safetensors(f), f)


def check_run_inputs(cfg: RunConfig, train: bool = True) -> None:
    """Refuse a corrupt .gguf LLM or checkpoint before any data is built (cheap: headers and small JSON only)."""
    from ecg_bench.models.llm import check_gguf
    from ecg_bench.safe_files import check_safetensors_header

    check_model_sizes(cfg.to_dict(), "the run config")  # the model allocates its weights from these at once
    if str(cfg.model.llm).endswith(".gguf"):
        check_gguf(cfg.model.llm)
    weights = getattr(cfg.model.encoder, "weights", "")  # an encoder's pretrained weights file (e.g. signal2vec)
    if weights and Path(weights).is_file():
        check_safetensors_header(weights)
    if not cfg.train.resume_from:
        return
    path = verify_checkpoint(cfg.train.resume_from)  # every file there, whole, with the tensors it was saved with
    read_trainer_state(path, cfg.train.max_steps if train else None)


def _shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def check_shapes(file: Path, tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], what: str,
                 require_all: bool = True) -> None:  # fmt: skip
    """Refuse tensors the model does not have, tensors it lacks, or a shape that differs, naming file and tensor."""
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise DataError(f"{file}: tensors that the {what} built from the config does not have: {unexpected[:5]}"
                        f"{' ...' if len(unexpected) > 5 else ''} ({len(unexpected)} in all)")  # fmt: skip
    missing = sorted(set(expected) - set(tensors)) if require_all else []
    if missing:
        raise DataError(f"{file}: lacks tensors of the {what} built from the config: {missing[:5]}"
                        f"{' ...' if len(missing) > 5 else ''} ({len(missing)} in all)")  # fmt: skip
    for k in sorted(tensors):
        got = tuple(tensors[k].shape)
        if got != expected[k]:
            raise DataError(
                f"{file}: tensor {k!r} has shape {list(got)} but the {what} built from the config expects "
                f"{list(expected[k])} (was the checkpoint made with other model settings, e.g. model.lora_r?)"
            )


def _load_adapter(folder: Path, elm) -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    adapter = folder / "adapter_model.safetensors"
    if not adapter.exists():
        raise FileNotFoundError(f"adapter weights missing: {adapter}")
    if not _is_peft(elm.llm):
        raise DataError(f"{adapter}: a LoRA adapter, but the model built from the config has no LoRA (model.lora false "
                        "or model.full_finetune true)")  # fmt: skip
    tensors = load_safetensors(adapter)
    check_shapes(adapter, tensors, _shapes(get_peft_model_state_dict(elm.llm)), "LoRA adapter")
    res = set_peft_model_state_dict(elm.llm, tensors)
    if getattr(res, "unexpected_keys", None):
        raise DataError(f"{adapter}: keys that fit no LoRA layer of this model: {res.unexpected_keys[:5]}")


def read_trainer_state(path: str | Path, max_steps: int | None = None) -> dict[str, Any]:
    """The checkpoint's trainer_state.json, its step an int in [0, max_steps] and losses numbers."""
    f = Path(path) / STATE_FILE
    state = read_json_file(f, "trainer state (JSON object)")
    if not isinstance(state, dict):
        raise DataError(f"{f}: expected a JSON object, got {type(state).__name__}")
    step = state.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DataError(f"{f}: 'step' must be a whole number >= 0, got {step!r}")
    if max_steps is not None and step > max_steps:
        raise DataError(f"{f}: claims step {step} but this run has train.max_steps {max_steps}; resume from a checkpoint "
                        "of this run, or raise train.max_steps")  # fmt: skip
    losses = state.get("losses", [])
    numbers = isinstance(losses, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in losses)
    if not numbers or len(losses) > step:
        raise DataError(f"{f}: 'losses' must be a list of at most {step} numbers (one per step)")
    return state


# ---------------------------------------------------------------- RNG state (exact resume with dropout)


def save_rng_state(folder: Path) -> None:
    """Write this process's RNG states: python and numpy as JSON, torch CPU and each CUDA device as uint8 tensors."""
    write_rng_state(folder, *rng_state(), rank=0)


def _rng_files(folder: Path, rank: int) -> tuple[Path, Path]:
    if rank == 0:
        return folder / RNG_JSON, folder / RNG_TENSORS
    return folder / f"rng_state.rank{rank}.json", folder / f"rng_state.rank{rank}.safetensors"


def write_rng_state(folder: Path, doc: dict[str, Any], tensors: dict[str, torch.Tensor], rank: int = 0) -> None:
    jf, tf = _rng_files(folder, rank)
    jf.write_text(json.dumps(doc) + "\n")
    save_file(tensors, str(tf))


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """This process's RNG states: (python and numpy as a JSON document, torch CPU and CUDA as uint8 tensors)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    doc = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },  # fmt: skip
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return doc, tensors


def restore_rng_state(folder: str | Path, rank: int | None = None) -> bool:
    """Set every RNG to the state saved in a checkpoint for this rank (rank 0's when it holds none for this rank,
    e.g. resuming on more processes)."""
    folder = Path(folder)
    rank = distributed.current().rank if rank is None else rank
    jf, tf = _rng_files(folder, rank)
    if rank and not (jf.exists() and tf.exists()):
        log.info("%s holds no RNG state for rank %d (saved by fewer processes): rank %d continues from rank 0's", folder,
                 rank, rank)  # fmt: skip
        jf, tf = _rng_files(folder, 0)
    if not (jf.exists() and tf.exists()):
        raise CheckpointError(f"{folder} holds no RNG state ({jf.name}, {tf.name}); every checkpoint saves it")
    doc = read_json_file(jf, "RNG state (JSON object)")
    tensors = load_safetensors(tf)
    try:
        py, npy = doc["python"], doc["numpy"]
        py_state = (int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss"])
        np_state = (str(npy["kind"]), np.asarray(npy["keys"], dtype=np.uint32), int(npy["pos"]), int(npy["has_gauss"]),
                    float(npy["cached_gaussian"]))  # fmt: skip
        cpu = tensors["torch_cpu"]
        if cpu.dtype != torch.uint8:
            raise TypeError(f"torch_cpu is {cpu.dtype}, expected uint8")
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise DataError(f"{jf} / {tf}: not a valid RNG state ({e.__class__.__name__}: {e})") from None
    cuda_keys = sorted((k for k in tensors if k.startswith("torch_cuda_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i], i)
        if n != len(cuda) or n != torch.cuda.device_count():
            log.warning("%s: RNG states for %d CUDA device(s), %d here: restored %d", tf, len(cuda), torch.cuda.device_count(), n)
    elif cuda:
        log.warning("%s: saved with %d CUDA device(s), resumed without CUDA: dropout masks will differ from an "
                    "uninterrupted run", tf, len(cuda))  # fmt: skip
    return True


def _load_optimizer(elm, optimizer, tensors: dict[str, torch.Tensor], file: Path | str = "optimizer state") -> None:
    params = _named_trainable(elm)
    for key, value in tensors.items():
        name, sep, field = key.partition("::")
        if not sep or name not in params:
            raise DataError(f"{file}: optimizer state {key!r} names no trainable parameter of the model built from the config")
        p = params[name]
        if field != "step" and tuple(value.shape) != tuple(p.shape):
            raise DataError(f"{file}: tensor {key!r} has shape {list(value.shape)} but parameter {name!r} has shape "
                            f"{list(p.shape)}")  # fmt: skip
        optimizer.state[p][field] = like_param(value, p) if field != "step" else value


# ------------------------------------------------------------------ the fold-leak check


def training_data_record(cfg: RunConfig, data: Any) -> dict[str, Any]:
    """What a checkpoint was trained on (``training_data.json``): fold, folds digest, hashed patient ids (``data``:
    the prepared data, its ``train`` items and ``folds_file``)."""
    patients = sorted({_patient_hash(it["patient_id"]) for it in data.train})
    return {"split": cfg.data.split, "fold": cfg.data.fold, "num_folds": cfg.data.num_folds, "seed": cfg.data.seed,
            "folds_sha256": hashlib.sha256(data.folds_file.read_bytes()).hexdigest(),
            "num_items": len(data.train), "patients_sha256_16": patients}  # fmt: skip


def _patient_hash(pid: Any) -> str:
    return hashlib.sha256(str(pid).encode()).hexdigest()[:16]


def check_not_trained_on(checkpoint: str | Path, test: list[dict], cfg: RunConfig) -> None:
    """Refuse to evaluate ``checkpoint`` on items whose patients it was trained on, naming the folds."""
    f = Path(checkpoint) / TRAINING_DATA_FILE
    if not f.is_file():
        log.warning("%s has no %s (saved outside a training run): cannot check that the evaluation patients were not in "
                    "its training data", checkpoint, TRAINING_DATA_FILE)  # fmt: skip
        return
    try:
        rec = json.loads(f.read_text())
        trained = set(rec["patients_sha256_16"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{f}: not a training-data record ({e}); expected JSON with patients_sha256_16") from None
    test_patients = {_patient_hash(it["patient_id"]) for it in test}
    overlap = len(test_patients & trained)
    if overlap and rec.get("split") == "official" and cfg.data.split == "official":
        log.warning("%d of the %d test patients of the official split were in the training data of %s: the release's "
                    "split shares them (see official_split.json); scored as released",
                    overlap, len(test_patients), checkpoint)  # fmt: skip
        return
    if overlap:
        raise DataError(
            f"{checkpoint} was trained on fold {rec.get('fold')} of {rec.get('num_folds')} (data seed {rec.get('seed')}); "
            f"{overlap} of the {len(test_patients)} patients of evaluation fold {cfg.data.fold} of {cfg.data.num_folds} "
            f"were in its training data, so the scores would not be held-out: evaluate with --data.fold {rec.get('fold')} "
            f"and the training run's data settings"
        )
    log.info("checked: none of the %d evaluation patients is in the training data of %s (fold %s)",
             len(test_patients), checkpoint, rec.get("fold"))  # fmt: skip
