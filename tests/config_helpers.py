"""Config sections from flat keyword arguments, through ``config.from_dict``. A keyword that is not a field of the
section but an option of one of its chosen components (``num_patients`` of ``data.source``, ``tokenizer`` of
``model.elm``) is put into each chosen component that has it."""

from __future__ import annotations

import dataclasses
from typing import Any

from ecg_bench.config import DataConfig, EvalConfig, ModelConfig, RunConfig, from_dict, to_dict


def _section(name: str, kw: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(getattr(RunConfig(), name))}
    own = {k: v for k, v in kw.items() if k in fields}
    section = getattr(from_dict(RunConfig, {name: own}, where="test"), name)
    rest = {k: v for k, v in kw.items() if k not in fields}
    if rest:
        layer = dict(own)
        for f in dataclasses.fields(section):
            chosen = getattr(section, f.name)
            if dataclasses.is_dataclass(chosen):
                opts = {k: v for k, v in rest.items() if k in {g.name for g in dataclasses.fields(chosen)}}
                if opts:
                    layer[f.name] = {**to_dict(chosen), **opts}
        taken = {k for v in layer.values() if isinstance(v, dict) for k in v}
        unknown = sorted(set(rest) - taken)
        if unknown:
            raise TypeError(f"{name}_config: {unknown} are neither {name} fields nor options of its chosen components")
        section = getattr(from_dict(RunConfig, {name: layer}, where="test"), name)
    return section  # range checks are validate()'s


def data_config(**kw: Any) -> DataConfig:
    return _section("data", kw)


def model_config(**kw: Any) -> ModelConfig:
    return _section("model", kw)


def eval_config(**kw: Any) -> EvalConfig:
    return _section("eval", kw)


def parse_pretrain(argv: list[str]) -> tuple[str, Any]:
    """``(name, checked options)`` of ``ecg-bench pretrain NAME [flags]``, parsed as the command parses them."""
    from ecg_bench import cli
    from ecg_bench.cli.tools import pretrain_options

    args = cli.parse_command("pretrain", cli.COMMANDS["pretrain"], argv)
    return args.sub, pretrain_options(args)
