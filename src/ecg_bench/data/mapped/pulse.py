"""PULSE (Liu et al., 2024) conversations joined to segments of the store's base dataset.

``ecg_instruct_pulse`` -- ECGInstruct (https://huggingface.co/datasets/PULSE-ECG/ECGInstruct):
``ECGInstruct.json`` (or ``ecg_instruct_pulse.json``, the original ECG-Bench's name) in
``data.mapped_dir``. A JSON list of LLaVA-style entries; fields used::

    {"id": "...",
     "image": "mimic_v4/files/p1000/p10000032/s40689238/40689238-0.png",   # or ptb-xl/.../06002_hr-0.png,
                                                                           #    code15_v4/1169160-0.png
     "conversations": [{"from": "human", "value": "<image>\\nWhat is the rhythm?"},
                       {"from": "gpt", "value": "..."}]}

``ecg_bench_pulse`` -- ECGBench (https://huggingface.co/datasets/PULSE-ECG/ECGBench), published as
Parquet only: either its download folder ``ECGBench/`` (``<subset>/test-*.parquet``; the subset is
the folder name; ``data.mapped_dir`` may be that folder or hold it) or a JSON list
``ecg_bench_pulse.json`` of entries with fields::

    {"image_path": "ptb-xl/.../06002_hr-0.png", "conversations": [...], "name": "ptb-test"}

Subsets read, as in the original ECG-Bench: ptb-test, ptb-test-report, ecgqa-test (PTB-XL),
cpsc-test (CPSC 2018), csn-test-no-cot (CSN), code15-test (CODE-15%); arena, mmmu-ecg and
g12-test-no-cot have no signal in the base datasets and are counted as ``filtered``. A turn value
stored as a list (ecgqa-test) is joined.

The image path names the source ECG (the ``-0.png`` suffix is dropped); entries on another base
dataset than the store's are counted under ``other_base_dataset``, missing records under
``missing_from_store`` (mapping report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecg_bench.config import DataConfig
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mapped.joining import MappedItems, find_input, load_entries, map_llava_entries
from ecg_bench.data.store import SegmentStore

INSTRUCT_FILES = ("ECGInstruct.json", "ecg_instruct_pulse.json", "ECGInstruct.jsonl")
BENCH_FILES = ("ECGBench", "ecg_bench_pulse.json", "ecg_bench_pulse.jsonl")
# ECGBench subset -> base dataset of its ECGs
BENCH_SUBSETS = {"ptb-test": "ptbxl", "ptb-test-report": "ptbxl", "ecgqa-test": "ptbxl", "cpsc-test": "cpsc2018",
                 "csn-test-no-cot": "csn", "code15-test": "code15"}  # fmt: skip


def _instruct_ref(entry: dict[str, Any]) -> tuple[str, str]:
    return str(entry.get("image") or entry.get("ecg") or ""), ""


def _bench_ref(entry: dict[str, Any]) -> tuple[str, str]:
    ref = entry.get("image_path") or entry.get("file_path") or entry.get("image") or ""
    return (str(ref) if isinstance(ref, str) else ""), BENCH_SUBSETS.get(str(entry.get("name", "")), "")


@MAPPED.register("ecg_instruct_pulse")
def ecg_instruct_pulse(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """PULSE's ECGInstruct conversations (MIMIC-IV-ECG, PTB-XL, CODE-15% ECGs)."""
    entries = load_entries(find_input(cfg, "ecg_instruct_pulse", INSTRUCT_FILES))
    return map_llava_entries(store, cfg, "ecg_instruct_pulse", entries, _instruct_ref)


@MAPPED.register("ecg_bench_pulse")
def ecg_bench_pulse(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """PULSE's ECGBench test conversations of the subsets with base-dataset ECGs."""
    root = Path(cfg.mapped_dir)
    is_download = root.is_dir() and any((root / subset).is_dir() for subset in BENCH_SUBSETS)  # mapped_dir = ECGBench/
    entries = load_entries(root if is_download else find_input(cfg, "ecg_bench_pulse", BENCH_FILES))
    kept = [e for e in entries if e.get("name") in BENCH_SUBSETS]
    items = map_llava_entries(store, cfg, "ecg_bench_pulse", kept, _bench_ref)
    report = items.reports[0]
    report.entries = len(entries)
    if len(entries) > len(kept):
        report.skipped["filtered"] += len(entries) - len(kept)
    return items
