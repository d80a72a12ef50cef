"""Fixed rhythm and spectrum features of the ECG + a trainable MLP: an encoder that learns in minutes on a CPU.

Features (all computed in the forward pass, no parameters):

- log power spectrum 0.5-40 Hz averaged over leads, in 1 Hz bands (waveform shape, noise, fibrillation);
- autocorrelation of the QRS-energy envelope at lags 0.25-2 s, in 20 ms steps: the first strong peak
  is the RR interval (heart rate), its height says how regular the rhythm is;
- the lag of the highest autocorrelation peak (the dominant RR interval, in s) and that peak's height;
- log RMS and log peak-to-peak amplitude per lead in mV (low voltage, hypertrophy).

The MLP maps them to ``num_tokens`` tokens of width ``out_dim``. Learned CNN encoders (``conv1d``) and
pretrained ones see more of the waveform but need far more steps to learn these basics.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch
from torch import nn

from ecg_bench.errors import ShapeError
from ecg_bench.config import EncoderOptions
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec

LAG_MIN_S, LAG_MAX_S, LAG_STEP_S = 0.25, 2.0, 0.02
F_MIN, F_MAX = 0.5, 40.0


class SpectralEncoder(nn.Module):
    def __init__(self, spec: EncoderSpec, hidden: int = 256):
        super().__init__()
        self.in_leads, self.seq_len, self.fs = spec.in_leads, spec.seq_len, float(spec.fs)
        self.num_tokens, self.out_dim = spec.num_tokens, spec.out_dim
        freqs = torch.fft.rfftfreq(spec.seq_len, d=1.0 / self.fs)
        band = torch.floor(freqs - F_MIN).long()  # 1 Hz bands starting at F_MIN
        keep = (freqs >= F_MIN) & (freqs < F_MAX)
        self.register_buffer("band_index", torch.where(keep, band, torch.full_like(band, -1)), persistent=False)
        self.num_bands = int(math.ceil(F_MAX - F_MIN))
        lags = torch.arange(
            round(LAG_MIN_S * self.fs), min(round(LAG_MAX_S * self.fs), spec.seq_len - 1), max(1, round(LAG_STEP_S * self.fs))
        )
        self.register_buffer("lags", lags, persistent=False)
        n_feat = self.num_bands + len(lags) + 2 + 2 * spec.in_leads
        self.norm = nn.LayerNorm(n_feat)
        self.mlp = nn.Sequential(nn.Linear(n_feat, hidden), nn.GELU(), nn.Linear(hidden, spec.num_tokens * spec.out_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, leads, L] -> [N, n_features]`` (no parameters; float32 for the FFTs)."""
        x = x.float()
        power = torch.fft.rfft(x - x.mean(-1, keepdim=True), dim=-1).abs().pow(2).mean(1)  # [N, F]
        keep = self.band_index >= 0
        bands = torch.zeros(x.shape[0], self.num_bands, device=x.device).index_add_(1, self.band_index[keep], power[:, keep])
        env = torch.diff(x, dim=-1).pow(2).sum(1)  # QRS energy envelope [N, L-1]
        env = env - env.mean(-1, keepdim=True)
        n = env.shape[-1]
        spec = torch.fft.rfft(env, n=2 * n, dim=-1)
        acf = torch.fft.irfft(spec.abs().pow(2), n=2 * n, dim=-1)[:, :n]
        acf = acf / acf[:, :1].clamp_min(1e-12)
        at_lags = acf[:, self.lags]
        peak, where = at_lags.max(-1)
        rr = self.lags[where].float() / self.fs
        rms = x.pow(2).mean(-1).sqrt()
        ptp = x.amax(-1) - x.amin(-1)
        return torch.cat(
            [torch.log(bands + 1e-6), at_lags, rr[:, None], peak[:, None], torch.log(rms + 1e-3), torch.log(ptp + 1e-3)], 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.in_leads, self.seq_len):
            raise ShapeError("spectral encoder input", x.shape, f"[N, {self.in_leads}, {self.seq_len}]")
        h = self.mlp(self.norm(self.features(x)).to(self.mlp[0].weight.dtype))
        return h.view(x.shape[0], self.num_tokens, self.out_dim)


@dataclass
class SpectralOptions(EncoderOptions):
    """Band powers and autocorrelation of each lead -> MLP (rate and rhythm features, trained from scratch)."""

    dim: int = 128
    """Width of each output token."""
    num_tokens: int = 4
    """Output tokens per ECG."""
    hidden: int = 256
    """Width of the MLP's hidden layer."""

    def problems(self) -> list[str]:
        return [f"{n} must be >= 1, got {getattr(self, n)}" for n in ("dim", "num_tokens", "hidden") if getattr(self, n) < 1]


@ENCODERS.register("spectral", options=SpectralOptions)
def spectral(opts: SpectralOptions, spec: EncoderSpec) -> nn.Module:
    return SpectralEncoder(spec, hidden=opts.hidden)
