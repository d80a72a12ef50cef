"""Pretrainer registry: ``ecg-bench pretrain NAME`` runs ``PRETRAINERS[NAME]`` with NAME's own options.

An encoder that can be pretrained registers its objective here, from its own package (e.g.
``models/encoders/signal2vec/pretrain.py``), next to the encoder that loads the weights. The registry
lives in the models layer, not in ``training/``, because the layer contract lets an encoder import
only downward; the command (``ecg_bench.training.pretrain``) sits above and only reads the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecg_bench.config import PretrainerOptions
from ecg_bench.registry import Registry


@dataclass(frozen=True)
class Pretrainer:
    """A registered pretraining objective: its options and the function that trains and saves."""

    options: type
    """Options dataclass (a PretrainerOptions, registered with the same name): each field is a flag ``--field_name``
    whose help is the field's docstring (a nested dataclass field ``x`` gives ``--x.field``);
    ``field(metadata={"required": True})`` makes a flag required."""
    run: Callable[[Any], str]
    """Trains and saves, given an instance of ``options``; returns a one-line summary for the user."""
    description: str
    """One line shown by ``ecg-bench pretrain --help``."""


PRETRAINERS: Registry[Pretrainer] = Registry("pretrainer", options=PretrainerOptions, package="ecg_bench.models.encoders")
