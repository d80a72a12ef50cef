"""MERL's released ResNet checkpoint -> our encoder folder.

The release is ``torch.save(model.ecg_encoder.state_dict())`` of their ``ResNet`` (``utils/resnet1d.py``); the full
model's state dict prefixes the same keys with ``ecg_encoder.``. Read with ``torch.load(weights_only=True)``.
Key names -> ours:

==========================================  ============================================
``conv1.weight``, ``bn1.*``                 ``stem.0.weight``, ``stem.1.*``
``layer{k}.{j}.{conv,bn}{1,2,3}.*``         ``stages.{k-1}.{j}.{conv,bn}{1,2,3}.*``
``layer{k}.{j}.shortcut.{0,1}.*``           ``stages.{k-1}.{j}.downsample.{0,1}.*``
``linear.*`` (their unused classifier)      dropped
==========================================  ============================================

MERL trained on MIMIC-IV-ECG at 500 Hz, 5000 samples (10 s), min-max scaled to [0, 1] over the recording: the
contract saved is fs 500, segment_len 5000, scaling minmax.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ecg_bench import folders
from ecg_bench.errors import DataError
from ecg_bench.models.encoders.contract import PreprocessingContract
from ecg_bench.models.encoders.mae.public import read_torch_checkpoint
from ecg_bench.models.encoders.merl.resnet import RESNET_SIZES, MerlOptions, ResNet1d
from ecg_bench.models.encoders.weights import IMPORT_FORMATS, load_state, write_encoder
from ecg_bench.signals.leads import LEADS

MERL_FS, MERL_LEN = 500.0, 5000


def _rename(key: str) -> str | None:
    if key.startswith("linear."):
        return None
    m = re.fullmatch(r"(conv1|bn1)\.(.+)", key)
    if m:
        return f"stem.{0 if m[1] == 'conv1' else 1}.{m[2]}"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", key)
    if m:
        return f"stages.{int(m[1]) - 1}.{m[2]}.{m[3].replace('shortcut.', 'downsample.')}"
    raise DataError(f"unexpected key {key!r} (not a MERL ResNet state dict)")


def map_merl(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Their ResNet keys -> ours; returns ``(state, size name)``."""
    if any(k.startswith("ecg_encoder.") for k in sd):
        sd = {k[len("ecg_encoder."):]: v for k, v in sd.items() if k.startswith("ecg_encoder.")}  # fmt: skip
    if "conv1.weight" not in sd:
        raise DataError("not a MERL ResNet state dict (conv1.weight missing)")
    out = {new: v for k, v in sd.items() if (new := _rename(k)) is not None}
    depths = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    widths = tuple(int(sd[f"layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5))
    for name, s in RESNET_SIZES.items():
        if s.depths == depths and s.widths == widths and s.stem == sd["conv1.weight"].shape[0]:
            return out, name
    raise DataError(f"MERL ResNet with blocks {depths} and widths {widths} matches no size of ours ({', '.join(RESNET_SIZES)})")


@IMPORT_FORMATS.register("merl")
def convert_merl(src: str | Path, out: str | Path, fs: float = MERL_FS, segment_len: int = MERL_LEN) -> Path:
    """Convert MERL's released ResNet ``.pth`` into an encoder folder ``out``."""
    state, size = map_merl(read_torch_checkpoint(src))
    enc = ResNet1d(MerlOptions(size=size), len(LEADS), segment_len)
    load_state(enc, state, src)
    tmp = folders.make_temp(out, "checkpoint")
    write_encoder(tmp, "merl", enc.architecture(), enc.state_dict(), PreprocessingContract(fs, segment_len, tuple(LEADS), "minmax"),
                  {"source": str(src), "converted_from": "cheliu-computation/MERL-ICML2024"})  # fmt: skip
    return folders.replace(tmp, out, "checkpoint")
