"""Evaluation conditions: what the model sees in place of each item's ECG, to tell whether it uses it.

A condition acts in the SIGNAL domain, on the store's segments (float32 ``[n_ecg, 12, L]`` in mV,
canonical lead order), before the representation; the representation then makes the model input and the
processor writes it into the prompt. So for the token ELM ``zeros`` is the ECG-Byte tokens of an all-zero
signal, and an image representation would draw a blank printout.

===========  ======================  ====================================================================
name         options                 the ECG the model sees
===========  ======================  ====================================================================
real         -                       the item's own ECG
zeros        -                       an all-zero signal of the same shape
no_signal    -                       none: the ``<ecg>`` markers are removed from the prompt
noise        snr_db, seed            the ECG plus Gaussian noise at that SNR (dB), per lead: noise power =
                                     the lead's power (mean removed) / 10^(SNR/10); a flat lead stays flat
shuffled     seed                    the ECG of ANOTHER patient of the same test set (a seeded derangement
                                     of the patients: no item keeps its own patient's ECG)
leads        leads                   only the named leads (e.g. ``I``, or ``limb`` = I II III aVR aVL aVF,
                                     ``precordial`` = V1..V6); the others zero
===========  ======================  ====================================================================

Each condition is a class registered in ``CONDITIONS`` with its options dataclass (a ConditionOptions): the
built-in ones here, any other module of this package (one file per condition) and installed plug-ins (entry point
group ``ecg_bench.conditions``) are found on first lookup;
``eval.conditions`` lists the conditions to run with their options, e.g. ``[real, zeros, {type: noise,
snr_db: 5}]``, and ``build_condition(options)`` builds one. Randomness is seeded per item (``(seed, item index)``), so a result does not depend on
the order in which items are generated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecg_bench.config import ConditionOptions, choice
from ecg_bench.data.record import LEADS
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.registry import Registry

LEAD_GROUPS: dict[str, tuple[str, ...]] = {"limb": LEADS[:6], "precordial": LEADS[6:]}
"""Names that stand for several leads in the leads condition's ``leads`` option."""

ReadSignals = Callable[[int], np.ndarray]
"""``read(i)``: the store segments ``[n_ecg, 12, L]`` of test item ``i``."""


@dataclass
class NoiseOptions(ConditionOptions):
    """The ECG plus Gaussian noise at a given SNR, per lead."""

    snr_db: float = 10.0
    """Signal-to-noise ratio of the added Gaussian noise, in dB, per lead (in [-30, 100]; lower = noisier)."""
    seed: int = 0
    """Seed of the noise (with the item's index)."""

    def problems(self) -> list[str]:
        ok = isinstance(self.snr_db, int | float) and math.isfinite(self.snr_db) and -30 <= self.snr_db <= 100
        return [] if ok else [f"snr_db must be a number in [-30, 100] dB, got {self.snr_db!r}"]


@dataclass
class ShuffledOptions(ConditionOptions):
    """Each question paired with the ECG of another patient of the same test set."""

    seed: int = 0
    """Seed of the patient derangement."""


@dataclass
class LeadsOptions(ConditionOptions):
    """Only some leads; the others zero."""

    leads: list[str] = field(default_factory=lambda: ["I"])
    """Leads kept (names from I II III aVR aVL aVF V1..V6, or the groups limb, precordial); the others zero."""

    def problems(self) -> list[str]:
        bad = [x for x in self.leads if x not in LEADS and x not in LEAD_GROUPS]
        if bad or not self.leads:
            return [f"unknown leads {bad or '(none given)'}; valid: {', '.join(LEADS)}, or the groups {', '.join(LEAD_GROUPS)}"]
        return []

    def indices(self) -> list[int]:
        names = {n for x in self.leads for n in LEAD_GROUPS.get(x, (x,))}
        return [i for i, n in enumerate(LEADS) if n in names]


class Condition:
    """Base: ``signals(i, read)`` is the signal the model sees for test item ``i`` (None: no ECG at all)."""

    ablation: bool = False
    """Whether the condition takes the item's ECG away (zeros, shuffled, no_signal): real minus each such condition
    is the report's signal-dependence audit."""

    def __init__(self, options: Any = None):
        self.options = options if options is not None else CONDITIONS.options(self.name)()

    @property
    def name(self) -> str:
        return next(n for n in CONDITIONS.names() if CONDITIONS.get(n) is type(self))

    def prepare(self, items: Sequence[dict]) -> None:
        """Look at the whole test set once before ``signals`` is asked (``shuffled`` picks its donors here)."""

    def signals(self, i: int, read: ReadSignals) -> np.ndarray | None:
        raise NotImplementedError


CONDITIONS: Registry[type[Condition]] = Registry("condition", options=ConditionOptions, package="ecg_bench.evaluation.conditions")


@CONDITIONS.register("real")
class Real(Condition):
    """The item's own ECG."""

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        return read(i)


@CONDITIONS.register("zeros")
class Zeros(Condition):
    """An all-zero signal of the item's shape: the same prompt, nothing in the signal."""

    ablation = True

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        return np.zeros_like(read(i))


@CONDITIONS.register("no_signal")
class NoSignal(Condition):
    """No ECG: the markers leave the prompt (the store is never read)."""

    ablation = True

    def signals(self, i: int, read: ReadSignals) -> None:
        return None


@CONDITIONS.register("noise", options=NoiseOptions)
class Noise(Condition):
    """The ECG plus Gaussian noise at ``snr_db`` per lead."""


    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        x = np.asarray(read(i), dtype=np.float32)
        power = np.square(x - x.mean(axis=-1, keepdims=True)).mean(axis=-1, keepdims=True)
        sigma = np.sqrt(power / 10.0 ** (self.options.snr_db / 10.0))
        rng = np.random.default_rng([self.options.seed, i])
        return (x + rng.standard_normal(x.shape) * sigma).astype(np.float32)


@CONDITIONS.register("shuffled", options=ShuffledOptions)
class Shuffled(Condition):
    """Each item gets the ECG of an item of ANOTHER patient: patients are put in a seeded random order and each
    one's items take the ECGs of the next patient's items (cyclically), so no patient keeps its own. An item
    needing more ECGs than its donor has reuses the donor's in turn."""

    ablation = True


    def prepare(self, items: Sequence[dict]) -> None:
        missing = [k for k, it in enumerate(items) if "patient_id" not in it]
        if missing:
            raise DataError(f"shuffled condition: items {missing[:5]} have no patient_id; it pairs items across patients")
        by_patient: dict[str, list[int]] = {}
        for k, it in enumerate(items):
            by_patient.setdefault(str(it["patient_id"]), []).append(k)
        if len(by_patient) < 2:
            raise DataError(f"shuffled condition: the test set has {len(by_patient)} patient(s); it needs at least 2")
        order = sorted(by_patient)
        order = [order[k] for k in np.random.default_rng(self.options.seed).permutation(len(order))]
        self.donor: list[int] = [0] * len(items)
        for p, nxt in zip(order, order[1:] + order[:1]):
            donors = by_patient[nxt]
            for rank, k in enumerate(by_patient[p]):
                self.donor[k] = donors[rank % len(donors)]
        self.num_ecgs = [len(it.get("segment_ids", ())) for it in items]

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        x = read(self.donor[i])
        n = self.num_ecgs[i] or len(x)
        return x if n == len(x) else x[np.arange(n) % len(x)]


@CONDITIONS.register("leads", options=LeadsOptions)
class Leads(Condition):
    """Only the leads in ``leads`` (names or groups); the others are zero."""


    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        x = np.asarray(read(i))
        out = np.zeros_like(x)
        keep = self.options.indices()
        out[:, keep] = x[:, keep]
        return out


def build_condition(condition: str | ConditionOptions) -> Condition:
    """The condition a ConditionOptions chooses (an item of ``eval.conditions``), or condition ``name`` with its
    default options; an unknown name lists the valid ones, bad options are a ConfigError."""
    opts = choice(ConditionOptions, condition) if isinstance(condition, str) else condition
    problems = opts.problems()
    if problems:
        raise ConfigError([f"{opts.type} condition: {p}" for p in problems])
    return CONDITIONS.get(opts.type)(opts)
