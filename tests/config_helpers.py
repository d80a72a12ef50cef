"""Config sections from flat keyword arguments, through ``config.from_dict`` (older flat keys such as
``num_patients`` or ``ablations`` are migrated into the component options that hold them now)."""

from __future__ import annotations

from typing import Any

from ecg_bench.config import DataConfig, EvalConfig, ModelConfig, RunConfig, from_dict


def _section(name: str, kw: dict[str, Any]) -> Any:
    return getattr(from_dict(RunConfig, {name: kw}, where="test"), name)  # range checks are validate()'s


def data_config(**kw: Any) -> DataConfig:
    return _section("data", kw)


def model_config(**kw: Any) -> ModelConfig:
    return _section("model", kw)


def eval_config(**kw: Any) -> EvalConfig:
    return _section("eval", kw)


def parse_pretrain(argv: list[str]) -> tuple[str, Any]:
    """``(name, checked options)`` of ``ecg-bench pretrain NAME [flags]``, parsed as the command parses them."""
    from ecg_bench import cli
    from ecg_bench.commands.tools import pretrain_options

    args = cli.parse_command("pretrain", cli.COMMANDS["pretrain"], argv)
    return args.sub, pretrain_options(args)
