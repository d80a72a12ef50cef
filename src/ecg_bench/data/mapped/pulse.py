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

PULSE's own test files (the JSON files its evaluation reads, e.g. the PTB-XL report-generation set)
are read too, by either name, with ``data.mapped_dir`` the file itself. Their entries carry no
``name``, spell the turns ``conversation`` and name the ECG by its rendered image::

    {"id": "...", "image": "test_images/ptb_test_v4/07190_hr-0.png",
     "conversation": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}]}

The image is named as PULSE and ECGBench name every image: the source record's file stem
(``07190_hr``: PTB-XL ecg_id 7190; ``A0001``; ``JS00001``; a CODE-15% exam id) then ``-<n>`` (the
index of the image rendered from that record, dropped, as the original ECG-Bench drops it), in a
folder named after the test set (``ptb_test_v4``). An entry without ``name`` gets its image folder
as its subset (``meta.subset``).

The image path names the source ECG; entries on another base dataset than the store's are counted
under ``other_base_dataset``, missing records under ``missing_from_store`` (mapping report).
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
OTHER_SUBSETS = ("arena", "mmmu-ecg", "g12-test-no-cot")
"""ECGBench subsets whose images come from no base dataset here: counted as ``filtered``."""


def _image(entry: dict[str, Any]) -> str:
    ref = entry.get("image_path") or entry.get("file_path") or entry.get("image") or entry.get("ecg") or ""
    return ref if isinstance(ref, str) else ""


def _instruct_ref(entry: dict[str, Any]) -> tuple[str, str]:
    return _image(entry), ""


def _bench_ref(entry: dict[str, Any]) -> tuple[str, str]:
    return _image(entry), BENCH_SUBSETS.get(str(entry.get("name", "")), "")


def _bench_wanted(entry: dict[str, Any]) -> bool:
    return entry.get("name") not in OTHER_SUBSETS


def _with_subset(entries: list[Any]) -> list[Any]:
    """Entries of PULSE's own test files have no ``name``: their image folder (``ptb_test_v4``) names the subset."""
    out = []
    for e in entries:
        if isinstance(e, dict) and not e.get("name") and "/" in _image(e):
            e = {**e, "name": _image(e).rsplit("/", 2)[-2]}
        out.append(e)
    return out


@MAPPED.register("ecg_instruct_pulse")
def ecg_instruct_pulse(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """PULSE's ECGInstruct conversations (MIMIC-IV-ECG, PTB-XL, CODE-15% ECGs), or one of PULSE's test files."""
    entries = load_entries(find_input(cfg, "ecg_instruct_pulse", INSTRUCT_FILES))
    return map_llava_entries(store, cfg, "ecg_instruct_pulse", _with_subset(entries), _instruct_ref)


@MAPPED.register("ecg_bench_pulse")
def ecg_bench_pulse(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """PULSE's ECGBench test conversations of the subsets with base-dataset ECGs, or one of PULSE's test files."""
    root = Path(cfg.mapped_dir)
    is_download = root.is_dir() and any((root / subset).is_dir() for subset in BENCH_SUBSETS)  # mapped_dir = ECGBench/
    entries = load_entries(root if is_download else find_input(cfg, "ecg_bench_pulse", BENCH_FILES))
    return map_llava_entries(store, cfg, "ecg_bench_pulse", _with_subset(entries), _bench_ref, wanted=_bench_wanted)
