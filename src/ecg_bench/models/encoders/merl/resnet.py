"""MERL's ECG tower: a 1-D bottleneck ResNet (ResNet-101: 3, 4, 23, 3 blocks, 2048 output channels), and the
``merl`` encoder (ENCODERS) that hands its feature map to the ELM.

Facts from github cheliu-computation/MERL-ICML2024 (``utils/resnet1d.py``); the code is ours: a stem conv
(12 -> 64, kernel 7, stride 2, no bias) + BatchNorm + ReLU without max-pooling, four stages of bottleneck blocks
(1x1 -> 3x3 (stride) -> 1x1 x4, BatchNorm after each, projection shortcut where the shape changes), strides
1, 2, 2, 2: ``[B, 12, L] -> [B, 2048, ceil(L / 16)]``. MERL feeds 500 Hz, 5000-sample ECGs min-max scaled to
[0, 1] over the whole recording.

For the ELM the feature map is averaged in time into ``num_tokens`` tokens of ``channels`` wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import EncoderOptions, path_field
from ecg_bench.errors import ConfigError, ShapeError
from ecg_bench.models.encoders.contract import SCALINGS, scale
from ecg_bench.models.encoders.weights import ENCODER_FOLDER, FromEncoderFolder


@dataclass(frozen=True)
class ResNetSize:
    depths: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    stem: int


RESNET_SIZES = {
    "tiny": ResNetSize((1, 1, 1, 1), (8, 16, 32, 64), 8),  # 256 channels: tests, CPU
    "resnet50": ResNetSize((3, 4, 6, 3), (64, 128, 256, 512), 64),
    "base": ResNetSize((3, 4, 23, 3), (64, 128, 256, 512), 64),  # ResNet-101 as MERL: 2048 channels
}
EXPANSION = 4


@dataclass
class MerlOptions(EncoderOptions):
    """Options of the ``merl`` encoder (the ECG tower of MERL)."""

    size: str = "tiny"
    """tiny (blocks 1-1-1-1, 256 channels), resnet50, or base (ResNet-101, 2048 channels, as MERL)."""
    scaling: str = "minmax"
    """Per-segment input scaling: minmax (to [0, 1], as MERL), zscore, none."""
    freeze: bool = False
    """Keep the encoder frozen (and its BatchNorm statistics fixed) inside the ELM."""
    num_tokens: int = 4
    """ECG tokens handed to the ELM: the feature map averaged in time into this many steps."""
    weights: str = path_field(checkpoint=ENCODER_FOLDER)
    """Encoder checkpoint folder (``ecg-bench pretrain merl`` or MERL's converted release); empty = random init.
    Its size is used, and its preprocessing contract is checked against the run."""

    def problems(self) -> list[str]:
        p = []
        if self.size not in RESNET_SIZES:
            p.append(f"size must be one of {', '.join(RESNET_SIZES)}, got {self.size!r}")
        if self.scaling not in SCALINGS:
            p.append(f"scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        if self.num_tokens < 1:
            p.append(f"num_tokens must be >= 1, got {self.num_tokens}")
        return p


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        out = width * EXPANSION
        self.conv1, self.bn1 = nn.Conv1d(c_in, width, 1, bias=False), nn.BatchNorm1d(width)
        self.conv2, self.bn2 = nn.Conv1d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm1d(width)
        self.conv3, self.bn3 = nn.Conv1d(width, out, 1, bias=False), nn.BatchNorm1d(out)
        self.downsample = (nn.Sequential(nn.Conv1d(c_in, out, 1, stride=stride, bias=False), nn.BatchNorm1d(out))
                           if stride != 1 or c_in != out else nn.Identity())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(self.bn3(self.conv3(h)) + self.downsample(x))


class ResNet1d(FromEncoderFolder, nn.Module):
    """``[B, leads, L] -> [B, channels, ceil(L / 16)]`` (scaled per segment first)."""

    def __init__(self, opts: MerlOptions, in_leads: int, seq_len: int, num_tokens: int = 1):
        super().__init__()
        if opts.problems():
            raise ConfigError([f"merl encoder: {m}" for m in opts.problems()])
        size = RESNET_SIZES[opts.size]
        self.opts, self.in_leads, self.seq_len = opts, in_leads, seq_len
        self.stem = nn.Sequential(nn.Conv1d(in_leads, size.stem, 7, stride=2, padding=3, bias=False), nn.BatchNorm1d(size.stem),
                                  nn.ReLU())  # fmt: skip
        c, stages = size.stem, []
        for i, (depth, width) in enumerate(zip(size.depths, size.widths)):
            blocks = []
            for j in range(depth):
                blocks.append(Bottleneck(c, width, (1 if i == 0 else 2) if j == 0 else 1))
                c = width * EXPANSION
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.channels = self.out_dim = c
        self.num_tokens = max(1, num_tokens)

    def architecture(self) -> dict:
        return {"options": {"size": self.opts.size, "scaling": self.opts.scaling}, "in_leads": self.in_leads,
                "seq_len": self.seq_len}  # fmt: skip

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.in_leads, self.seq_len):
            raise ShapeError("merl encoder input", x.shape, f"[N, {self.in_leads}, {self.seq_len}]")
        h = self.stem(scale(x.float(), self.opts.scaling).to(self.stem[0].weight.dtype))
        for stage in self.stages:
            h = stage(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, leads, L] -> [N, num_tokens, channels]`` (the feature map averaged in time)."""
        return F.adaptive_avg_pool1d(self.features(x), self.num_tokens).transpose(1, 2)

    def train(self, mode: bool = True) -> "ResNet1d":
        """A frozen encoder stays in eval mode, so its BatchNorm statistics never move."""
        return super().train(mode and any(p.requires_grad for p in self.parameters()))
