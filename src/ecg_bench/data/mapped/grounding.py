"""GEM's ECG-Grounding conversations (Lan et al., 2025) joined to segments of the store's base dataset.

Mapped dataset ``ecg_grounding``. Download https://huggingface.co/datasets/LANSG/ECG-Grounding
(``ecg_jsons/``): ``data.mapped_dir`` is the folder holding one of (first found is read)
``ecg_grounding.json`` (the original ECG-Bench's name), ``ECG_Grounding_30k.json``,
``grounding_train_30k.json``, ``ecg-grounding-test.json``, or the file itself. A JSON list of
LLaVA-style entries; fields used::

    {"id": "...",
     "ecg": "mimic-iv/files/p1000/p10000032/s40689238/40689238",       # or
            # "ecg_ptbxl_benchmarking/data/ptbxl/records500/06000/06002_hr", "code15/.../1169160",
            # "champan-shaoxing/.../JS20001", "cpsc2018/.../A1980"
     "image": "...png",                                                # used when "ecg" is absent
     "conversations": [{"from": "human", "value": "<image>\\nInterpret this ECG ..."},
                       {"from": "gpt", "value": "... grounded diagnosis ..."}]}

The ECGs come from MIMIC-IV-ECG, PTB-XL and CODE-15% (plus CSN / CPSC in the test set); entries on
another base dataset than the store's are counted under ``other_base_dataset``, missing records
under ``missing_from_store`` (mapping report).
"""

from __future__ import annotations

from typing import Any

from ecg_bench.config import DataConfig
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mapped.joining import MappedItems, find_input, load_entries, map_llava_entries
from ecg_bench.data.store import SegmentStore

FILES = ("ecg_grounding.json", "ECG_Grounding_30k.json", "grounding_train_30k.json", "ecg-grounding-test.json")


def _ref(entry: dict[str, Any]) -> tuple[str, str]:
    return str(entry.get("ecg") or entry.get("image") or ""), ""


@MAPPED.register("ecg_grounding")
def ecg_grounding(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """GEM's ECG-Grounding conversations."""
    entries = load_entries(find_input(cfg, "ecg_grounding", FILES))
    return map_llava_entries(store, cfg, "ecg_grounding", entries, _ref)
