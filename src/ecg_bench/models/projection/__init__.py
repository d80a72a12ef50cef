"""Projectors from encoder features to the LLM's hidden size, registered in ``PROJECTORS`` with their options: the
built-in ones here, any other module of this package and installed plug-ins (entry point group
``ecg_bench.projectors``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ecg_bench.config import ProjectorOptions
from ecg_bench.registry import Registry

PROJECTORS: Registry[Callable[[Any, int, int], nn.Module]] = Registry("projector", options=ProjectorOptions, package="ecg_bench.models.projection")
"""``builder(options, in_dim, out_dim) -> nn.Module``."""


@PROJECTORS.register("linear")
def linear(opts: Any, in_dim: int, out_dim: int) -> nn.Module:
    """One linear layer."""
    return nn.Linear(in_dim, out_dim)


@dataclass
class MLPOptions(ProjectorOptions):
    """Linear-GELU-Linear, as LLaVA-1.5."""

    hidden: int = 0
    """Width of the hidden layer (0 = the LLM's hidden size)."""

    def problems(self) -> list[str]:
        return [f"hidden must be >= 0 (0 = the LLM's hidden size), got {self.hidden}"] if self.hidden < 0 else []


@PROJECTORS.register("mlp", options=MLPOptions)
def mlp(opts: MLPOptions, in_dim: int, out_dim: int) -> nn.Module:
    hidden = opts.hidden or out_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


def build_projector(opts: Any, in_dim: int, out_dim: int) -> nn.Module:
    """The projector ``opts`` chooses (``opts.type``), from ``in_dim`` features to ``out_dim``."""
    return PROJECTORS.get(opts.type)(opts, in_dim, out_dim)
