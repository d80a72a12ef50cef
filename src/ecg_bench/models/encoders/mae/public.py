"""ST-MEM's released checkpoints (github bakqui/ST-MEM: "Encoder" and "Full (encoder + decoder)") -> our encoder folder.

The release is a ``torch.save`` of ``{"model": state_dict, "config": ..., ...}``; it is read with
``torch.load(weights_only=True)`` (tensors and plain containers only, no code runs). Key names of their
``ST_MEM_ViT`` (the full checkpoint prefixes them with ``encoder.``) -> ours:

=============================================  =========================================
``to_patch_embedding.{1,2,3}.*``               ``patch_embed.{0,1,2}.*`` (LN(p), Linear(p, w), LN(w))
``sep_embedding`` [w]                          ``sep``
``lead_embeddings.{i}`` [w]                    ``lead_embed[i]`` (stacked [12, w])
``pos_embedding`` [1, n + 2, w]                fixed sin-cos buffer (not loaded; its n gives the segment length)
``block{i}.attn.norm.*``                       ``blocks.{i}.norm1.*``
``block{i}.attn.fn.to_qkv.{weight,bias}``      ``blocks.{i}.self_attn.in_proj_{weight,bias}`` (q, k, v stacked alike)
``block{i}.attn.fn.to_out.0.*``                ``blocks.{i}.self_attn.out_proj.*``
``block{i}.ff.norm.*``                         ``blocks.{i}.norm2.*``
``block{i}.ff.fn.net.{0,3}.*``                 ``blocks.{i}.linear{1,2}.*``
``norm.*``                                     ``norm.*``
``head.*``, decoder keys                       dropped
=============================================  =========================================

Their released ViT-B/75 was pretrained on 250 Hz, 2250-sample (9 s) segments, band-passed 0.67-40 Hz and z-scored
over the whole segment: the contract saved is fs 250, segment_len 2250, scaling zscore.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ecg_bench import folders
from ecg_bench.errors import DataError
from ecg_bench.models.encoders.contract import PreprocessingContract
from ecg_bench.models.encoders.mae.vit import SIZES, SignalViT, StMemOptions
from ecg_bench.models.encoders.weights import IMPORT_FORMATS, load_state, write_encoder
from ecg_bench.safe_files import check_torch_archive
from ecg_bench.signals.leads import LEADS

ST_MEM_FS = 250.0

_RULES = [
    (r"to_patch_embedding\.(\d)\.(weight|bias)", lambda m: f"patch_embed.{int(m[1]) - 1}.{m[2]}"),
    (r"sep_embedding", lambda m: "sep"),
    (r"block(\d+)\.attn\.norm\.(weight|bias)", lambda m: f"blocks.{m[1]}.norm1.{m[2]}"),
    (r"block(\d+)\.attn\.fn\.to_qkv\.(weight|bias)", lambda m: f"blocks.{m[1]}.self_attn.in_proj_{m[2]}"),
    (r"block(\d+)\.attn\.fn\.to_out\.0\.(weight|bias)", lambda m: f"blocks.{m[1]}.self_attn.out_proj.{m[2]}"),
    (r"block(\d+)\.ff\.norm\.(weight|bias)", lambda m: f"blocks.{m[1]}.norm2.{m[2]}"),
    (r"block(\d+)\.ff\.fn\.net\.0\.(weight|bias)", lambda m: f"blocks.{m[1]}.linear1.{m[2]}"),
    (r"block(\d+)\.ff\.fn\.net\.3\.(weight|bias)", lambda m: f"blocks.{m[1]}.linear2.{m[2]}"),
    (r"norm\.(weight|bias)", lambda m: f"norm.{m[1]}"),
]
_DROPPED = re.compile(r"head\..*|pos_embedding|lead_embeddings\.\d+")


def read_torch_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a ``torch.save`` file, read safely (``weights_only=True``); ``{"model": sd}`` unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    check_torch_archive(path)  # sizes, member count and compression from the zip directory, before torch reads it
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler refuses anything but tensors and plain containers
        raise DataError(f"{path}: not a weights-only torch checkpoint ({type(e).__name__}: {e})") from None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(ck, dict) and isinstance(ck.get(key), dict):
            ck = ck[key]
    if not isinstance(ck, dict) or not all(isinstance(v, torch.Tensor) for v in ck.values()):
        raise DataError(f"{path}: expected a state dict (name -> tensor)")
    return ck


def map_st_mem(sd: dict[str, torch.Tensor], where: str = "ST-MEM checkpoint") -> tuple[dict[str, torch.Tensor], dict]:
    """Their encoder keys -> ours; returns ``(state, dims)`` with dims width, depth, mlp_dim, patch_size, num_patches."""
    if any(k.startswith("encoder.") for k in sd):  # the full (encoder + decoder) checkpoint
        sd = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}  # fmt: skip
    need = ("to_patch_embedding.1.weight", "sep_embedding", "pos_embedding", "lead_embeddings.0")
    if any(k not in sd for k in need):
        raise DataError(f"{where}: not an ST-MEM encoder state dict (missing {[k for k in need if k not in sd]})")
    out, unknown = {}, []
    for key, value in sd.items():
        for pattern, name in _RULES:
            m = re.fullmatch(pattern, key)
            if m:
                out[name(m)] = value
                break
        else:
            if not _DROPPED.fullmatch(key):
                unknown.append(key)
    if unknown:
        raise DataError(f"{where}: unexpected keys {unknown[:5]} (not an ST-MEM ViT encoder)")
    leads = sorted(int(k.split(".")[1]) for k in sd if k.startswith("lead_embeddings."))
    out["lead_embed"] = torch.stack([sd[f"lead_embeddings.{i}"] for i in leads])
    depth = len({k.split(".")[0] for k in sd if re.match(r"block\d+\.", k)})
    dims = {"width": int(sd["sep_embedding"].shape[0]), "depth": depth, "leads": len(leads),
            "mlp_dim": int(sd["block0.ff.fn.net.0.weight"].shape[0]) if depth else 0,
            "patch_size": int(sd["to_patch_embedding.1.weight"].shape[0]),
            "num_patches": int(sd["pos_embedding"].shape[1]) - 2}  # fmt: skip
    return out, dims


def size_of(dims: dict) -> str:
    for name, s in SIZES.items():
        if (s.width, s.depth, s.mlp_dim) == (dims["width"], dims["depth"], dims["mlp_dim"]):
            return name
    raise DataError(f"ST-MEM checkpoint of width {dims['width']}, depth {dims['depth']}, MLP {dims['mlp_dim']} matches no "
                    f"size of ours ({', '.join(SIZES)})")  # fmt: skip


@IMPORT_FORMATS.register("st_mem")
def convert_st_mem(src: str | Path, out: str | Path, fs: float = ST_MEM_FS, scaling: str = "zscore") -> Path:
    """Convert ST-MEM's released ``.pth`` into an encoder folder ``out`` (a new folder; ours may be replaced)."""
    state, dims = map_st_mem(read_torch_checkpoint(src), str(src))
    if dims["leads"] != len(LEADS):
        raise DataError(f"{src}: {dims['leads']} lead embeddings, expected {len(LEADS)}")
    seq_len = dims["num_patches"] * dims["patch_size"]
    opts = StMemOptions(size=size_of(dims), patch_size=dims["patch_size"], scaling=scaling)
    enc = SignalViT("st_mem", opts, len(LEADS), seq_len)
    load_state(enc, state, src)
    tmp = folders.make_temp(out, "checkpoint")
    write_encoder(tmp, "st_mem", enc.architecture(), enc.state_dict(), PreprocessingContract(fs, seq_len, tuple(LEADS), scaling),
                  {"source": str(src), "converted_from": "bakqui/ST-MEM", "note": "pretrained on 0.67-40 Hz band-passed ECGs"})  # fmt: skip
    return folders.replace(tmp, out, "checkpoint")
