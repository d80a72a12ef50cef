"""An encoder checkpoint folder: weights (safetensors) + architecture + preprocessing contract (JSON).

::

    <folder>/encoder.safetensors   the encoder's state dict (our key names)
    <folder>/encoder.json          {"format", "format_version", "encoder", "architecture", "contract", "meta"}
    <folder>/pretrain_*.safetensors, pretrain_state.json   (pretraining runs only: the whole model, optimizer
                                   moments and step, for ``--resume``)

Written by ``ecg-bench pretrain mae|merl|clip`` and by the converters of public checkpoints (``public.py``); read by
the encoders' builders, which rebuild the architecture, check the contract against the run and load strictly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ecg_bench.errors import DataError
from ecg_bench.models.encoders.contract import PreprocessingContract
from ecg_bench.registry import Registry
from ecg_bench.safe_files import load_safetensors, read_json_file

FORMAT, FORMAT_VERSION = "ecg-bench-encoder", 1
WEIGHTS_FILE, DOC_FILE = "encoder.safetensors", "encoder.json"
ENCODER_FOLDER = "encoder_weights"

IMPORT_FORMATS: Registry[Any] = Registry("import format", package="ecg_bench.models.encoders", listing="import_formats")
"""``ecg-bench import-encoder --format NAME``: a converter ``(src .pth, out folder) -> encoder folder`` of a public
release, registered by the encoder it feeds (``@IMPORT_FORMATS.register("st_mem")`` in ``mae/public.py``)."""
"""A checkpoint's copy of the pretrained encoder folder its encoder was built from (the ``weights`` option)."""


class FromEncoderFolder:
    """Mixin of an encoder module that a pretrained encoder folder builds: its builder sets ``weights_folder``, and
    ``save_extra`` copies that folder's ``encoder.json`` and ``encoder.safetensors`` (not a pretraining run's resume
    state) into a checkpoint as ``ENCODER_FOLDER``, so the checkpoint loads from its own folder alone even when the
    encoder was frozen (a frozen encoder's weights are not among the trained modules)."""

    weights_folder: str = ""

    def save_extra(self, folder: str | Path) -> None:
        if not self.weights_folder or not Path(self.weights_folder).expanduser().is_dir():
            return
        src, dst = Path(self.weights_folder).expanduser(), Path(folder) / ENCODER_FOLDER
        dst.mkdir()
        for name in (DOC_FILE, WEIGHTS_FILE):
            if (src / name).is_file():
                shutil.copy2(src / name, dst / name)


def write_encoder(folder: str | Path, encoder: str, architecture: dict[str, Any], state: dict[str, torch.Tensor],
                  contract: PreprocessingContract, meta: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write the two encoder files into ``folder`` (which the caller made: see ``folders.make_temp``)."""
    folder = Path(folder)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in state.items()}, str(folder / WEIGHTS_FILE))
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": encoder, "architecture": architecture,
           "contract": contract.to_json(), "meta": meta or {}}  # fmt: skip
    (folder / DOC_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    return folder


def read_encoder(folder: str | Path, encoder: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(doc, tensors)`` of an encoder folder; ``encoder`` given: the folder must hold that encoder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"encoder weights {folder}: expected a folder with {DOC_FILE} and {WEIGHTS_FILE} "
                        "(written by `ecg-bench pretrain` or a converter of public weights)")  # fmt: skip
    doc = read_json_file(folder / DOC_FILE, "encoder description")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{folder / DOC_FILE}: expected format {FORMAT!r} version {FORMAT_VERSION}")
    if encoder is not None and doc.get("encoder") != encoder:
        raise DataError(f"{folder}: holds weights of encoder {doc.get('encoder')!r}, not {encoder!r}")
    return doc, load_safetensors(folder / WEIGHTS_FILE)


def contract_of(doc: dict[str, Any], folder: str | Path) -> PreprocessingContract:
    return PreprocessingContract.from_json(doc.get("contract") or {}, f"{Path(folder) / DOC_FILE}")


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str | Path) -> None:
    """Strict load that names missing / unexpected keys and shape mismatches in a DataError."""
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    bad = [f"{k}: {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in tensors and own[k].shape != tensors[k].shape]
    if missing or extra or bad:
        raise DataError(f"{where}: weights do not fit the encoder built from its description: missing {missing[:5]}, "
                        f"unexpected {extra[:5]}, shapes (file vs model) {bad[:5]}")  # fmt: skip
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
