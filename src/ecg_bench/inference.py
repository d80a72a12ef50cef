"""Using a trained model: ``from_pretrained`` (alias ``load_elm``), asking it about an ECG file, ``push_to_hub``.

A checkpoint folder is all a model needs (``training/checkpoint.py`` lists its files): ``config.json`` (the run
config: LLM, family, encoder, LoRA, ...), ``elm.json`` (input dimensions and the vocabulary the added tokens
got), ``preprocessing.json`` (the preprocessing contract: fs, segment length, lead order, units, NaN policy),
the trained weights, and the files the ELM is built from (the ECG-Byte tokenizer, Signal2Vec vectors). The
segment store it was trained from is never read: a model loads after its data is deleted. The base LLM is
loaded by the name ``model.llm`` gives (a short name, a hub id, a local folder or .gguf).

An ECG file goes the store's way (``data.ecg_file`` reads it, ``PreprocessingContract.prepare`` runs the store's
``preprocess_record`` on it), then the model's representation and processor make the prompt, exactly as in
evaluation; nothing here asks which ELM family the model is.

``evaluate --checkpoint`` builds its model through ``build_from_checkpoint`` too (``pipeline.run``).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_bench.config import ModelConfig, RunConfig, path_options
from ecg_bench.data.contract import CONTRACT_FILE, PreprocessingContract, check_checkpoint_contract
from ecg_bench.data.ecg_file import read_ecg_file
from ecg_bench.data.record import ECGRecord
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.store import absolute, source_settings, store_status
from ecg_bench.devices import resolve_device
from ecg_bench.errors import DataError, ECGBenchError
from ecg_bench.evaluation.results_file import read_results
from ecg_bench.limits import check_max_new_tokens, check_model_sizes
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.chat import ECG_PLACEHOLDER
from ecg_bench.models.elm import ELM, Processor, build_elm
from ecg_bench.models.llm import HUB_ID
from ecg_bench.representations.base import Representation, build_representation
from ecg_bench.safe_files import read_json_file
from ecg_bench.signals.leads import LEADS
from ecg_bench.training.checkpoint import MANIFEST_FILE, load_checkpoint
from ecg_bench.training.manifest import read_manifest, verify_checkpoint, write_manifest
from ecg_bench.training.model_card import CARD_FILE, render_card, replace_peft_card

log = get_logger(__name__)

__all__ = ["Conversation", "ECGLanguageModel", "build_from_checkpoint", "from_pretrained", "load_elm",
           "push_to_hub",
           "read_contract", "stage_for_hub"]  # fmt: skip

HUB_EXCLUDE = ("optimizer.safetensors", "rng_state.json", "rng_state.safetensors", ".ecg-bench.json")
"""Checkpoint files only a resumed training run needs (and the folder marker): not uploaded."""


# ---------------------------------------------------------------------------------------------- loading


def resolve_checkpoint(dir_or_hub_id: str | Path, revision: str | None = None) -> Path:
    """A local checkpoint folder, or a hub id (``owner/name``) downloaded with ``huggingface_hub.snapshot_download``."""
    text = str(dir_or_hub_id)
    path = Path(text).expanduser()
    if path.is_dir():
        return verify_checkpoint(path)
    if path.exists():
        raise DataError(f"{path} is a file; a checkpoint is a folder (with config.json, elm.json, preprocessing.json, ...)")
    if HUB_ID.fullmatch(text) and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(repo_id=text, revision=revision))
        except Exception as e:  # network, auth, missing repo: huggingface_hub raises many types
            raise ECGBenchError(f"could not fetch checkpoint {text!r} from the Hugging Face Hub ({type(e).__name__}: {e}); "
                                "offline? give a local checkpoint folder") from None  # fmt: skip
        return verify_checkpoint(path)
    raise FileNotFoundError(f"checkpoint folder not found: {path} (nor a hub id owner/name)")


def checkpoint_config(folder: str | Path) -> RunConfig:
    """The run config a checkpoint carries, its file paths replaced by the checkpoint's own copies."""
    folder = Path(folder)
    f = folder / "config.json"
    if not f.is_file():
        raise DataError(f"{folder} is not an ecg-bench checkpoint: {f.name} (the run config) is missing")
    check_model_sizes(read_json_file(f, "run config (JSON object)"), str(f))  # before anything is built from it
    cfg = RunConfig.load(f)
    for opt in path_options(cfg.model):  # the files the chosen components are built from: the checkpoint's own copies
        if not opt.checkpoint:
            continue
        dotted = f"model.{opt.dotted}"
        if (folder / opt.checkpoint).exists():
            opt.value = str(folder / opt.checkpoint)
        # exists, not is_file: model.encoder.weights of merl, mae and the vision encoders is an encoder folder (`ecg-bench
        # pretrain`'s), which the encoder is built from at every load
        elif opt.value and not Path(opt.value).expanduser().exists():
            is_file = bool(Path(opt.value).suffix)
            raise DataError(f"{folder} carries no {opt.checkpoint}, and the {'file' if is_file else 'folder'} its "
                            f"config.json names as {dotted} ({opt.value}) does not exist here: copy it into the "
                            f"checkpoint as {opt.checkpoint}")  # fmt: skip
    return cfg


def read_contract(folder: str | Path) -> PreprocessingContract:
    """The checkpoint's preprocessing contract (its ``preprocessing.json``)."""
    return PreprocessingContract.read(Path(folder))


def _input_dims(folder: Path, contract: PreprocessingContract) -> tuple[int, int, float, str, tuple[int, ...]]:
    """``(seq_len, in_leads, fs, kind, shape)`` the ELM is built for: elm.json's, checked against the contract's
    representation (a signal ``[leads, L]``, or a picture of a ``[12, L]`` segment)."""
    rep = build_representation(contract.representation_config(), fs=contract.fs)
    out = rep.output(contract.segment_len)
    if out.variable_length:
        raise DataError(f"{folder}: representation {contract.representation!r} makes variable-length {out.kind}; the ELM "
                        "families take fixed-shape signals or images")  # fmt: skip
    in_leads, seq_len = out.shape if out.kind == "signal" and len(out.shape) == 2 else (len(LEADS), contract.segment_len)
    manifest = _manifest(folder)
    saved = (manifest or {}).get("input")
    if isinstance(saved, dict):
        got = (saved.get("seq_len"), saved.get("in_leads"), saved.get("fs"))
        if got != (seq_len, in_leads, contract.fs):
            raise DataError(f"{folder / MANIFEST_FILE}: input {got} (seq_len, in_leads, fs) differs from what {CONTRACT_FILE} "
                            f"gives: {(seq_len, in_leads, contract.fs)}")  # fmt: skip
    return seq_len, in_leads, contract.fs, out.kind, tuple(out.shape)


def _manifest(folder: Path) -> dict[str, Any]:
    f = folder / MANIFEST_FILE
    m = read_json_file(f, "ELM manifest (JSON object)")
    if not isinstance(m, dict):
        raise DataError(f"{f}: expected a JSON object (family, input, vocab), got {type(m).__name__}")
    return m


def build_from_checkpoint(
    folder: str | Path, model_cfg: ModelConfig | None = None, device: str | torch.device = "cpu"
) -> tuple[ELM, Processor, PreprocessingContract]:
    """The checkpoint's ELM with its trained weights, its processor and its preprocessing contract, built from the
    checkpoint alone (``model_cfg``: the model section to build, default the checkpoint's own)."""
    folder = Path(folder)
    cfg = checkpoint_config(folder)
    model_cfg = model_cfg or cfg.model
    contract = check_checkpoint_contract(folder, cfg)
    seq_len, in_leads, fs, kind, shape = _input_dims(folder, contract)
    manifest = _manifest(folder)
    if manifest and manifest.get("family") and manifest["family"] != model_cfg.elm.type:
        raise DataError(f"{folder / MANIFEST_FILE}: a {manifest['family']!r} ELM, but the config builds "
                        f"{model_cfg.elm.type!r} (model.elm.type)")  # fmt: skip
    elm, processor = build_elm(model_cfg, seq_len=seq_len, in_leads=in_leads, fs=fs, kind=kind, shape=shape)
    saved_vocab = (manifest or {}).get("vocab")
    if saved_vocab and saved_vocab != elm.vocab:
        raise DataError(f"{folder / MANIFEST_FILE}: the model was trained with vocabulary {saved_vocab}, but the LLM "
                        f"tokenizer of model.llm {model_cfg.llm!r} now gives {elm.vocab}: the added tokens would get "
                        "other ids")  # fmt: skip
    load_checkpoint(folder, elm)
    elm.to(device).eval()
    return elm, processor, contract


@dataclass
class ECGLanguageModel:
    """A trained ELM ready to answer questions about ECG files (``from_pretrained`` makes one)."""

    elm: ELM
    """The ELM with its trained weights, in eval mode."""
    processor: Processor
    """Its processor: (messages, ECG) -> prompt ids (and the ECG tensor where the family reads one)."""
    config: RunConfig
    """The run config the checkpoint was trained with."""
    contract: PreprocessingContract
    """How an ECG is preprocessed for this model (the checkpoint's preprocessing.json)."""
    representation: Representation
    """Segment -> model input, as in training (``contract.representation`` with its options)."""
    folder: Path
    """The checkpoint folder it was loaded from."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where the model runs."""

    # ---------------------------------------------------------------- ECG -> segments
    def preprocess(self, ecg: str | Path | ECGRecord | np.ndarray, fs: float | None = None, **file_options: Any) -> np.ndarray:
        """``preprocess_ecg`` with this model's contract: float32 segments ``[n, 12, segment_len]``."""
        return preprocess_ecg(self.contract, ecg, fs, **file_options)

    # ---------------------------------------------------------------- answering
    def reply(self, messages: list[dict], segment: np.ndarray | None, max_new_tokens: int | None = None) -> str:
        """The model's answer to the last user message of ``messages`` (``<ecg>`` markers stand for ``segment``,
        float32 ``[12, segment_len]``; None = no ECG), greedy, through the processor as in evaluation."""
        room = int(max_new_tokens or self.config.eval.max_new_tokens)
        check_max_new_tokens(room, "max_new_tokens")
        ecg = None if segment is None else self.representation.represent(np.asarray(segment, np.float32)[None])
        turns = self.processor.generation_inputs([*messages, {"role": "assistant", "content": ""}], ecg, room=room)
        if not turns:
            raise DataError("nothing to answer: the conversation has no user message")
        batch = self.processor.collate_generation([turns[-1]]).to(self.device)
        p = self.processor
        ids = self.elm.generate(batch.input_ids, batch.attention_mask, batch.ecg, max_new_tokens=room,
                                stop_token_ids=p.stop_token_ids, pad_token_id=p.pad_token_id)  # fmt: skip
        return self.processor.decode(ids[0])

    def conversation(self, segment: np.ndarray, max_new_tokens: int | None = None) -> "Conversation":
        """A conversation about one segment ``[12, segment_len]``: ``.ask(question)`` answers, remembering earlier turns."""
        return Conversation(self, segment, max_new_tokens)

    def ask(self, ecg: Any, question: str, segment: int = 0, fs: float | None = None, max_new_tokens: int | None = None,
            **file_options: Any) -> str:  # fmt: skip
        """One answer about segment ``segment`` (0 = the first ``segment_len`` samples) of an ECG file or array."""
        segs = self.preprocess(ecg, fs=fs, **file_options)
        where = "the ECG array" if isinstance(ecg, np.ndarray) else str(ecg)
        return self.conversation(pick_segment(segs, segment, where), max_new_tokens).ask(question)

    def push_to_hub(self, repo_id: str, results: str | Path | dict | None = None, **kwargs: Any) -> str:
        """``push_to_hub(self.folder, repo_id, ...)``."""
        return push_to_hub(self.folder, repo_id, results, **kwargs)


def preprocess_ecg(
    contract: PreprocessingContract, ecg: str | Path | ECGRecord | np.ndarray, fs: float | None = None, **file_options: Any
) -> np.ndarray:
    """An ECG file (``data.ecg_file``: WFDB, CinC .mat, CODE-15% .hdf5 with ``exam_id``, .npy/.csv with ``fs``), an
    ECGRecord, or an array ``[12, samples]`` at ``fs`` -> float32 segments ``[n, 12, segment_len]`` by the store's own
    preprocessing (``contract.prepare``)."""
    if isinstance(ecg, ECGRecord):
        record, where = ecg, f"record {ecg.record_id}"
    elif isinstance(ecg, np.ndarray):
        if fs is None:
            raise DataError("an ECG array needs its sampling rate: fs=...")
        record, where = ECGRecord("array", "", np.asarray(ecg, dtype=np.float32), float(fs)), "the ECG array"
    else:
        record, where = read_ecg_file(ecg, fs=fs, **file_options), str(ecg)
    if record.fs < contract.fs:
        log.warning("%s is sampled at %g Hz, below the model's %g Hz: it is resampled up (no information is added)",
                    where, record.fs, contract.fs)  # fmt: skip
    return contract.prepare(record, where)


def pick_segment(segments: np.ndarray, index: int, where: str = "the ECG") -> np.ndarray:
    if not -len(segments) <= index < len(segments):
        raise DataError(f"{where}: segment {index} asked for, but it has {len(segments)} segment(s) (0-{len(segments) - 1})")
    return segments[index]


def from_pretrained(dir_or_hub_id: str | Path, device: str = "auto", revision: str | None = None) -> ECGLanguageModel:
    """Load a trained ELM from a checkpoint folder (or a hub id, downloaded when online) and nothing else."""
    folder = resolve_checkpoint(dir_or_hub_id, revision)
    dev = resolve_device(device)
    cfg = checkpoint_config(folder)
    elm, processor, contract = build_from_checkpoint(folder, cfg.model, dev)
    rep = build_representation(contract.representation_config(), fs=contract.fs)
    log.info("loaded %s (%s ELM on %s): ECGs resampled to %g Hz, %d-sample segments", folder, cfg.model.elm.type, cfg.model.llm,
             contract.fs, contract.segment_len)  # fmt: skip
    return ECGLanguageModel(elm, processor, cfg, contract, rep, folder, dev)


load_elm = from_pretrained


# ---------------------------------------------------------------------------------------------- chat command


def chat_answers(
    checkpoint: str | Path,
    ecg: str | Path,
    questions: Iterable[str],
    segment: int | str = 0,
    max_new_tokens: int | None = None,
    device: str = "cpu",
    **file_options: Any,
) -> Iterator[tuple[int, str, str]]:
    """``(segment index, question, answer)`` for each question about segment ``segment`` of ``ecg`` (``"all"``: every
    segment, each its own conversation). The file is read, preprocessed and checked with the checkpoint's contract
    before the model is loaded and before the first question is read."""
    folder = resolve_checkpoint(checkpoint)
    segs = preprocess_ecg(read_contract(folder), ecg, **file_options)
    chosen = list(range(len(segs))) if segment == "all" else [int(segment)]
    for i in chosen:
        pick_segment(segs, i, str(ecg))
    model = from_pretrained(folder, device=device)
    shown = ", ".join(map(str, chosen))
    log.info("%s: %d segment(s) of %d samples at %g Hz; answering about segment %s", ecg, len(segs),
             model.contract.segment_len, model.contract.fs, shown)  # fmt: skip
    sessions = {i: model.conversation(segs[i], max_new_tokens) for i in chosen}
    for q in questions:
        q = q.strip()
        if not q:
            continue
        for i in chosen:
            yield i, q, sessions[i].ask(q)


class Conversation:
    """One conversation about one segment: the ECG opens the first user message (as in training); every answer
    sees the earlier questions and the model's own earlier answers (cut to ``model.max_length`` like evaluation)."""

    def __init__(self, model: ECGLanguageModel, segment: np.ndarray, max_new_tokens: int | None):
        self.model, self.segment, self.max_new_tokens, self.history = model, segment, max_new_tokens, []

    def ask(self, question: str) -> str:
        content = f"{ECG_PLACEHOLDER}\n{question}" if not self.history else question
        self.history.append({"role": "user", "content": content})
        answer = self.model.reply(self.history, self.segment, self.max_new_tokens)
        self.history.append({"role": "assistant", "content": answer})
        return answer


# ---------------------------------------------------------------------------------------------- hub


def find_results(folder: Path) -> Path | None:
    """The results.json of the run that wrote checkpoint ``folder`` (``<run>/checkpoints/<name>``), else the newest
    evaluation of it (``<folder>/eval-*/results.json``), else None."""
    run = folder.parent.parent / "results.json"
    if folder.parent.name == "checkpoints" and run.is_file():
        return run
    evals = sorted(folder.glob("eval-*/results.json"))
    return evals[-1] if evals else None


def stage_for_hub(checkpoint: str | Path, out_dir: str | Path, repo_id: str, results: str | Path | dict | None = None) -> Path:
    """Write into the new folder ``out_dir`` what ``push_to_hub`` uploads: the files the checkpoint's manifest lists
    (verified first: all there, whole, none a link; without optimizer and RNG state), a model card filled with the
    metrics of ``results`` (a results.json path or dict; default ``find_results``) and a new manifest of these."""
    src = resolve_checkpoint(checkpoint)
    cfg = checkpoint_config(src)
    contract = read_contract(src)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty; stage_for_hub writes into a new or empty folder")
    if results is None:
        found = find_results(src)
        if found is None:
            log.warning("no results.json found for %s: the model card will carry no metrics (pass results=...)", src)
        results = found
    res = results if isinstance(results, dict) or results is None else read_results(results)
    if res is not None and not isinstance(res, dict):
        raise DataError(f"{results}: expected a results.json object with 'conditions'")
    for name in read_manifest(src):
        if Path(name).name in HUB_EXCLUDE or Path(name).name.startswith("rng_state."):
            continue
        dst = out / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, dst, follow_symlinks=False)  # verified: regular files inside the checkpoint
    replace_peft_card(out, cfg)
    training = (read_json_file(out / "training_data.json", "training data") if (out / "training_data.json").is_file() else None)
    state = read_json_file(out / "trainer_state.json", "trainer state") if (out / "trainer_state.json").is_file() else {}
    step = state.get("step") if isinstance(state, dict) else None
    card = render_card(cfg, contract, res, training if isinstance(training, dict) else None, step, location=repo_id)
    (out / CARD_FILE).write_text(card)
    write_manifest(out)
    return out


def push_to_hub(
    checkpoint: str | Path,
    repo_id: str,
    results: str | Path | dict | None = None,
    *,
    private: bool = True,
    token: str | None = None,
    commit_message: str = "Upload ECG-language model (ecg-bench)",
    api: Any = None,
) -> str:
    """Upload a checkpoint to the Hugging Face Hub as ``repo_id`` with a filled model card (``stage_for_hub``);
    returns the repo URL. ``api`` is a ``huggingface_hub.HfApi`` (default: a new one with ``token``)."""
    if not HUB_ID.fullmatch(repo_id):
        raise DataError(f"repo_id {repo_id!r}: expected a hub id of the form owner/name")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="ecg-bench-hub-") as tmp:
        staged = stage_for_hub(checkpoint, Path(tmp) / "model", repo_id, results)
        url = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(staged), repo_id=repo_id, repo_type="model", commit_message=commit_message)
    log.info("pushed %s to %s", checkpoint, repo_id)
    return str(url)


def read_questions(lines: Iterable[str], where: str = "stdin") -> Iterator[str]:
    """Questions from lines of text (stdin), blank lines skipped; ends at EOF. A line that is not UTF-8 (undecodable,
    or decoded to lone surrogates) is a DataError naming its line number."""
    n = 0
    try:
        for n, line in enumerate(lines, 1):
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as e:
                raise DataError(f"{where}: question line {n} is not valid UTF-8 text (at character {e.start})") from None
            if line.strip():
                yield line.strip()
    except UnicodeDecodeError as e:
        bad = e.object[e.start : e.start + 1]
        raise DataError(f"{where}: not valid UTF-8 text after question line {n} ({e.reason}: {bad!r}); give the "
                        "questions in UTF-8") from None  # fmt: skip


# ------------------------------------------------------------------ paths inside a checkpoint


def with_absolute_paths(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` whose relative paths (every ``path_field`` option; a name-or-path one only where that path
    exists) are absolute: the config saved in a checkpoint."""
    out = copy.deepcopy(cfg)
    for opt in path_options(out):
        v = opt.value
        if v and not Path(v).expanduser().is_absolute() and (not opt.name_ok or Path(v).exists()):
            opt.value = absolute(v)
    return out


def evaluation_defaults(trained: RunConfig, checkpoint: str | Path) -> dict[str, Any]:
    """Overrides for evaluating ``checkpoint`` (whose config is ``trained``): relative paths resolved against
    the checkpoint, never the current folder; a new output folder ``<checkpoint>/eval-<time>``; no HF export;
    the checkpoint's own copy of each file a component is built from (``path_field(checkpoint=NAME)``)."""
    ck = Path(checkpoint)
    over: dict[str, Any] = {}
    for opt in path_options(trained):
        v = opt.value
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute() and (not opt.name_ok or (ck / v).exists()):
            if "[" in opt.dotted:  # an option inside a list (eval.metrics): resolved in the trained config itself
                opt.value = absolute(str(ck / v))
            else:
                over[opt.dotted] = absolute(str(ck / v))
    stamp, n = time.strftime("%Y%m%d-%H%M%S"), 1
    out = ck / f"eval-{stamp}"
    while out.exists():
        n += 1
        out = ck / f"eval-{stamp}-{n}"
    over["output_dir"] = str(out)
    over["data.export_hf"] = ""
    over["data.store_dir"] = ""  # decided by evaluation_store once the config is complete
    for opt in path_options(trained):  # the checkpoint's own copies of the files its components are built from
        if opt.checkpoint and (ck / opt.checkpoint).exists() and "[" not in opt.dotted:
            over[opt.dotted] = str(ck / opt.checkpoint)
    return over


def evaluation_store(cfg: RunConfig, trained: RunConfig, checkpoint: str | Path) -> str:
    """The store an evaluation reads: the training run's (the checkpoint's config names it) when it exists and
    fits, used read-only; else a new one inside the evaluation folder. Nothing is built where the checkpoint points."""
    ck = Path(checkpoint)
    named = Path(trained.data.store_dir).expanduser() if trained.data.store_dir else None
    run_dir = Path(trained.output_dir).expanduser()
    trained_store = named or (run_dir if run_dir.is_absolute() else ck / run_dir) / "store"
    if not trained_store.is_absolute():
        trained_store = ck / trained_store
    src = SOURCES.get(cfg.data.source.type)(cfg.data)
    status, detail = store_status(trained_store, source_settings(cfg, src), src.fingerprint())
    if status == "current":
        return str(trained_store)
    own = Path(cfg.output_dir) / "store"
    why = {"missing": "not found"}.get(status, f"{status.replace('_', ' ')}: {detail}")
    log.info("the training run's store %s cannot be used (%s); building one for this evaluation in %s", trained_store, why, own)
    return str(own)
