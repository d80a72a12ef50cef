"""ECG-Chat (Zhao et al., 2024) conversations joined to MIMIC-IV-ECG segments.

Mapped datasets ``pretrain_mimic`` (report-generation pretraining set) and ``ecg_instruct_45k``
(instruction tuning). Download (https://github.com/YubaoZhao/ECG-Chat): ``pretrain_mimic.json``
and ``ecg_instruct_45k.json``; ``data.mapped_dir`` is the folder holding them, or the file itself.
Each file is a JSON list (JSON Lines also accepted) of LLaVA-style entries; the fields used are::

    {"id": "...",                                                   # kept as meta.source_id
     "ecg": "files/p1000/p10000032/s40689238/40689238",             # path into MIMIC-IV-ECG
     "conversations": [{"from": "human", "value": "<ecg>\\nDescribe this ECG."},
                       {"from": "gpt", "value": "Sinus rhythm. ..."}]}

``ecg`` resolves to the study id (the store's record_id, here ``"40689238"``). Turns become
user/assistant messages with one ``<ecg>`` marker opening the first user message (``<ecg>`` /
``<image>`` tags are removed wherever they were, see ``joining.convert_turns``). Entries whose study
is not in the store are counted under ``missing_from_store`` in the mapping report.
"""

from __future__ import annotations

from typing import Any

from ecg_bench.config import DataConfig
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mapped.joining import MappedItems, find_input, load_entries, map_llava_entries
from ecg_bench.data.store import SegmentStore

FILES = {"pretrain_mimic": ("pretrain_mimic.json", "pretrain_mimic.jsonl"),
         "ecg_instruct_45k": ("ecg_instruct_45k.json", "ecg_instruct_45k.jsonl")}  # fmt: skip


def _ref(entry: dict[str, Any]) -> tuple[str, str]:
    return str(entry.get("ecg") or entry.get("image") or ""), "mimic_iv_ecg"


def map_ecg_chat(store: SegmentStore, cfg: DataConfig, name: str) -> MappedItems:
    """Entries of the ECG-Chat file of ``name`` joined to ``store``."""
    entries = load_entries(find_input(cfg, name, FILES[name]))
    return map_llava_entries(store, cfg, name, entries, _ref)


@MAPPED.register("pretrain_mimic")
def pretrain_mimic(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """ECG-Chat's pretraining conversations (MIMIC-IV-ECG report generation)."""
    return map_ecg_chat(store, cfg, "pretrain_mimic")


@MAPPED.register("ecg_instruct_45k")
def ecg_instruct_45k(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """ECG-Chat's ECG-Instruct-45k instruction conversations (MIMIC-IV-ECG)."""
    return map_ecg_chat(store, cfg, "ecg_instruct_45k")
