"""Evaluation conditions: what the model sees in place of each item's ECG, to tell whether it uses it.

A condition acts in the SIGNAL domain, on the store's segments (float32 ``[n_ecg, 12, L]`` in mV,
canonical lead order), before the representation; the representation then makes the model input and the
processor writes it into the prompt. So for the token ELM ``zeros`` is the ECG-Byte tokens of an all-zero
signal, and an image representation would draw a blank printout.

===========  ======================  ====================================================================
name         options (EvalConfig)    the ECG the model sees
===========  ======================  ====================================================================
real         -                       the item's own ECG
zeros        -                       an all-zero signal of the same shape
no_signal    -                       none: the ``<ecg>`` markers are removed from the prompt
noise        eval.noise_snr_db,      the ECG plus Gaussian noise at that SNR (dB), per lead: noise power =
             eval.condition_seed     the lead's power (mean removed) / 10^(SNR/10); a flat lead stays flat
shuffled     eval.condition_seed     the ECG of ANOTHER patient of the same test set (a seeded derangement
                                     of the patients: no item keeps its own patient's ECG)
leads        eval.leads              only the named leads (e.g. ``I``, or ``limb`` = I II III aVR aVL aVF,
                                     ``precordial`` = V1..V6); the others zero
===========  ======================  ====================================================================

Each condition is a class registered in ``CONDITIONS`` with its options dataclass (``options_type``);
``build_condition(name, eval_cfg)`` fills the options from the EvalConfig fields named in
``config_fields``. Randomness is seeded per item (``(seed, item index)``), so a result does not depend on
the order in which items are generated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from ecg_bench.data.record import LEADS
from ecg_bench.errors import ConfigError, DataError, UnknownNameError
from ecg_bench.registry import Registry

LEAD_GROUPS: dict[str, tuple[str, ...]] = {"limb": LEADS[:6], "precordial": LEADS[6:]}
"""Names that stand for several leads in ``eval.leads``."""

ReadSignals = Callable[[int], np.ndarray]
"""``read(i)``: the store segments ``[n_ecg, 12, L]`` of test item ``i``."""


@dataclass(frozen=True)
class NoOptions:
    """This condition takes no options."""


@dataclass(frozen=True)
class NoiseOptions:
    snr_db: float = 10.0
    """Signal-to-noise ratio of the added Gaussian noise, in dB, per lead (lower = noisier)."""
    seed: int = 0
    """Seed of the noise (with the item's index)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.snr_db, int | float) and math.isfinite(self.snr_db) and -30 <= self.snr_db <= 100):
            raise ConfigError([f"noise condition: snr_db must be a number in [-30, 100] dB, got {self.snr_db!r}"])


@dataclass(frozen=True)
class ShuffledOptions:
    seed: int = 0
    """Seed of the patient derangement."""


@dataclass(frozen=True)
class LeadsOptions:
    leads: tuple[str, ...] = ("I",)
    """Leads kept (names from I II III aVR aVL aVF V1..V6, or the groups limb, precordial); the others zero."""

    def __post_init__(self) -> None:
        bad = [x for x in self.leads if x not in LEADS and x not in LEAD_GROUPS]
        if bad or not self.leads:
            raise ConfigError([f"leads condition: unknown leads {bad or '(none given)'}; valid: {', '.join(LEADS)}, "
                               f"or the groups {', '.join(LEAD_GROUPS)}"])  # fmt: skip

    def indices(self) -> list[int]:
        names = {n for x in self.leads for n in LEAD_GROUPS.get(x, (x,))}
        return [i for i, n in enumerate(LEADS) if n in names]


class Condition:
    """Base: ``signals(i, read)`` is the signal the model sees for test item ``i`` (None: no ECG at all)."""

    options_type: ClassVar[type] = NoOptions
    config_fields: ClassVar[dict[str, str]] = {}
    """Option name -> the EvalConfig field it is read from (until conditions get their own config section)."""

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.options_type()

    def prepare(self, items: Sequence[dict]) -> None:
        """Look at the whole test set once before ``signals`` is asked (``shuffled`` picks its donors here)."""

    def signals(self, i: int, read: ReadSignals) -> np.ndarray | None:
        raise NotImplementedError


CONDITIONS: Registry[type[Condition]] = Registry("condition")


@CONDITIONS.register("real")
class Real(Condition):
    """The item's own ECG."""

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        return read(i)


@CONDITIONS.register("zeros")
class Zeros(Condition):
    """An all-zero signal of the item's shape: the same prompt, nothing in the signal."""

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        return np.zeros_like(read(i))


@CONDITIONS.register("no_signal")
class NoSignal(Condition):
    """No ECG: the markers leave the prompt (the store is never read)."""

    def signals(self, i: int, read: ReadSignals) -> None:
        return None


@CONDITIONS.register("noise")
class Noise(Condition):
    """The ECG plus Gaussian noise at ``snr_db`` per lead."""

    options_type = NoiseOptions
    config_fields = {"snr_db": "noise_snr_db", "seed": "condition_seed"}

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        x = np.asarray(read(i), dtype=np.float32)
        power = np.square(x - x.mean(axis=-1, keepdims=True)).mean(axis=-1, keepdims=True)
        sigma = np.sqrt(power / 10.0 ** (self.options.snr_db / 10.0))
        rng = np.random.default_rng([self.options.seed, i])
        return (x + rng.standard_normal(x.shape) * sigma).astype(np.float32)


@CONDITIONS.register("shuffled")
class Shuffled(Condition):
    """Each item gets the ECG of an item of ANOTHER patient: patients are put in a seeded random order and each
    one's items take the ECGs of the next patient's items (cyclically), so no patient keeps its own. An item
    needing more ECGs than its donor has reuses the donor's in turn."""

    options_type = ShuffledOptions
    config_fields = {"seed": "condition_seed"}

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


@CONDITIONS.register("leads")
class Leads(Condition):
    """Only the leads in ``leads`` (names or groups); the others are zero."""

    options_type = LeadsOptions
    config_fields = {"leads": "leads"}

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        x = np.asarray(read(i))
        out = np.zeros_like(x)
        keep = self.options.indices()
        out[:, keep] = x[:, keep]
        return out


def build_condition(name: str, eval_cfg: Any = None) -> Condition:
    """The condition ``name`` with its options read from ``eval_cfg`` (an EvalConfig; None: defaults)."""
    cls = CONDITIONS.get(name)
    names = {f.name for f in fields(cls.options_type)}
    kwargs = {opt: getattr(eval_cfg, field) for opt, field in cls.config_fields.items() if eval_cfg is not None and opt in names}
    if "leads" in kwargs:
        kwargs["leads"] = tuple(kwargs["leads"])
    return cls(cls.options_type(**kwargs))


def condition_problems(eval_cfg: Any) -> list[str]:
    """Every unknown condition name in ``eval_cfg.ablations`` and every bad condition option (checked whether or
    not its condition is named: a bad value is refused, not silently unused)."""
    problems = []
    for name in eval_cfg.ablations:
        if name not in CONDITIONS:
            problems.append(f"eval.ablations: {UnknownNameError('condition', name, CONDITIONS.names())}")
    for name in CONDITIONS:
        try:
            build_condition(name, eval_cfg)
        except ConfigError as e:
            flags = ", ".join(f"eval.{f}" for f in CONDITIONS.get(name).config_fields.values())
            problems.extend(f"{flags}: {p}" for p in e.problems)
    return problems
