"""Options of ``ecg-bench probe`` (``probe.py``), apart so that the command table imports them without torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ecg_bench.config import EncoderOptions, choice

LABEL_SETS = ("statements", "superclasses")


def _random_st_mem() -> EncoderOptions:
    return choice(EncoderOptions, "st_mem", num_tokens=1)


@dataclass
class ProbeOptions:
    """Options of ``ecg-bench probe`` (flags ``--store DIR --encoder.type st_mem --encoder.weights DIR ...``)."""

    store: str = field(default="", metadata={"required": True})
    """Segment store folder whose labels are probed."""
    encoder: EncoderOptions = field(default_factory=_random_st_mem)
    """The encoder and its options, as ``model.encoder`` of a run (``--encoder.type st_mem --encoder.weights DIR
    --encoder.num_tokens 12``; ``ecg-bench list --details encoders``). Its ``num_tokens`` output tokens are
    concatenated into the features; without ``weights`` it is a random, frozen encoder (the baseline)."""
    labels: str = "statements"
    """What is probed: statements (the store's ``labels``: PTB-XL's SCP statements, CinC's SNOMED names, the synthetic
    attributes) or superclasses (PTB-XL's diagnostic superclasses NORM, MI, STTC, CD, HYP of each segment's SCP codes,
    read through --scp_statements; segments without a diagnostic statement are left out, as in PTB-XL's benchmark)."""
    scp_statements: str = ""
    """PTB-XL's scp_statements.csv (SCP code -> diagnostic_class), for --labels superclasses."""
    num_folds: int = 5
    """Patient-disjoint folds."""
    min_count: int = 10
    """Least positive and negative segments a label needs to be probed."""
    l2: float = 1e-2
    """L2 penalty of the logistic regression (on standardised features)."""
    max_iter: int = 100
    """L-BFGS iterations per fold."""
    max_segments: int = 0
    """Random segments to use (0 = all)."""
    batch_size: int = 64
    """Segments per encoder forward pass."""
    seed: int = 0
    """Seed of the random encoder, the folds, the segment sample and the bootstrap."""
    out: str = ""
    """JSON file to write the result to (empty = none)."""

    def problems(self) -> list[str]:
        """Range checks of the probe's own options (the encoder's are checked as ``encoder (TYPE): ...``)."""
        p = [f"{k} must be >= 1, got {getattr(self, k)}" for k in ("min_count", "max_iter", "batch_size") if getattr(self, k) < 1]
        if self.num_folds < 2:
            p.append(f"num_folds must be >= 2, got {self.num_folds}")
        if self.l2 < 0:
            p.append(f"l2 must be >= 0, got {self.l2}")
        if self.labels not in LABEL_SETS:
            p.append(f"labels must be one of {', '.join(LABEL_SETS)}, got {self.labels!r}")
        elif self.labels == "superclasses" and not self.scp_statements:
            p.append("labels=superclasses needs --scp_statements (PTB-XL's scp_statements.csv)")
        if self.max_segments < 0:
            p.append(f"max_segments must be >= 0 (0 = all), got {self.max_segments}")
        return p

    def all_problems(self) -> list[str]:
        """The probe's and its encoder's problems (for options built in Python, which skip ``config.build``)."""
        return self.problems() + [f"encoder ({self.encoder.type}): {m}" for m in self.encoder.problems()]
