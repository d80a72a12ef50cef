"""Helpers that copy real CinC-layout records into tmp_path and damage them in named ways."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io

from ecg_bench.config import DataConfig
from ecg_bench.data.sources.base import SOURCES
from config_helpers import data_config


def copy_record(src_dir: Path, stem: str, dst_dir: Path, new_stem: str | None = None) -> Path:
    """Copy ``stem.hea`` / ``stem.mat`` into ``dst_dir`` (renamed to ``new_stem``); returns the new .hea path."""
    new_stem = new_stem or stem
    dst_dir.mkdir(parents=True, exist_ok=True)
    text = (src_dir / f"{stem}.hea").read_text()
    (dst_dir / f"{new_stem}.hea").write_text(text.replace(stem, new_stem))
    shutil.copyfile(src_dir / f"{stem}.mat", dst_dir / f"{new_stem}.mat")
    return dst_dir / f"{new_stem}.hea"


def load_val(hea: Path) -> np.ndarray:
    return scipy.io.loadmat(hea.with_suffix(".mat"))["val"]


def write_val(hea: Path, val: np.ndarray) -> None:
    """Write ``val`` as the record's MATLAB v4 'val' matrix (the challenge's own format)."""
    scipy.io.savemat(hea.with_suffix(".mat"), {"val": val}, format="4")


def edit_header(hea: Path, edit: Callable[[list[str]], list[str]]) -> None:
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(edit(lines)) + "\n")


def source(name: str, data_dir: Path, **kw):
    return SOURCES.get(name)(data_config(source=name, data_dir=str(data_dir), **kw))
