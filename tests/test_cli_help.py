"""Every command's and sub-command's --help runs through ``cli.main``, is made the same way and shows only what the
command uses (the options of the components chosen, not of every registered one); flags have one spelling; the
command table is in sync; --version."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from ecg_bench import cli
from ecg_bench.cli.tokenizer import ACTIONS
from ecg_bench.models.encoders import PRETRAINERS

from config_helpers import parse_pretrain

ALL = [(), *[(c,) for c in cli.COMMANDS], *[("pretrain", n) for n in PRETRAINERS.names()], *[("tokenizer", a) for a in ACTIONS]]


def _help(path, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main([*path, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_every_command_is_walked():
    assert {p[0] for p in ALL if p} == set(cli.COMMANDS) and ("pretrain", "signal2vec") in ALL


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "ecg-bench")
def test_help_exits_0_with_output(path, capsys):
    out = _help(path, capsys) if path else None
    if not path:
        assert cli.main([]) == 0
        out = capsys.readouterr().out
    assert out.strip() and "usage: ecg-bench" in out


def test_the_table_is_in_sync(capsys):
    """Every command resolves to an entry function with a summary and an options dataclass; ``ecg-bench --help``
    lists every command; the parser of every command is the one in flags.py (no argparse of its own)."""
    import dataclasses

    for name, command in cli.COMMANDS.items():
        assert callable(command.function()) and command.summary(), name
        config = cli._resolve(command.config)
        assert dataclasses.is_dataclass(config) or (command.sub and all(
            dataclasses.is_dataclass(config.get(n).options) for n in config.names())), name  # fmt: skip
        for field in command.positional:
            assert field in {f.name for f in dataclasses.fields(config)}, (name, field)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(f"    {name}" in out for name in cli.COMMANDS)


def test_each_command_help_shows_only_what_it_uses(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    data = _help(("data",), capsys)
    assert "--data.source.type" in data and "--data.fold" in data
    assert "--train." not in data and "--model." not in data and "--eval." not in data
    assert len(data.splitlines()) <= 100  # the synthetic source's options, not every source's
    ev = _help(("evaluate",), capsys)
    assert "--checkpoint" in ev and "--eval.conditions" in ev and "--model." not in ev
    assert "--train.lr" not in ev and "--train.device" in ev  # only the training settings evaluation uses
    run = _help(("run",), capsys)
    assert "--model.encoder.type" in run and "--model.encoder.dim" in run and "--train.lr" in run
    assert "Config file for" not in run  # draccus's sub-config file flags are hidden
    assert len(run.splitlines()) <= 250  # at 80 columns
    assert "--details" in _help(("list",), capsys)


def test_run_help_shows_the_chosen_components_options_only(capsys, monkeypatch):
    """``--model.encoder.type st_mem --help``: st_mem's options, not the thirteen encoders'; the richest combination
    of components still fits in 250 lines (100 columns: the width when piped)."""
    monkeypatch.setenv("COLUMNS", "100")
    st_mem = _help(("run", "--model.encoder.type", "st_mem"), capsys)
    assert "--model.encoder.mask_ratio" in st_mem and "--model.encoder.dim " not in st_mem
    assert "--model.encoder.type NAME = st_mem" in st_mem
    conv = _help(("run",), capsys)
    assert "--model.encoder.dim" in conv and "--model.encoder.mask_ratio" not in conv
    assert "--data.source.folder" not in conv and "--data.source.num_patients" in conv
    rich = _help(("run", "--data.source", "ptbxl", "--data.mapped.type", "ecg_qa_ptbxl", "--model.elm", "ecg_byte",
                  "--model.representation", "image", "--model.encoder.type", "st_mem"), capsys)  # fmt: skip
    assert "--data.source.folder" in rich and "--model.representation.layout" in rich
    assert len(rich.splitlines()) <= 250, len(rich.splitlines())


def test_pretrain_help_lists_pretrainers_and_each_shows_only_its_options(capsys):
    out = _help(("pretrain",), capsys)
    assert all(name in out for name in PRETRAINERS.names()) and "--skipgram.dim" not in out
    out = _help(("pretrain", "signal2vec"), capsys)
    assert "--num_samples" in out and "--skipgram.dim" in out and "--train.lr" not in out and "--vocab_size" not in out
    assert "10 %" in out  # a literal % in a field docstring does not crash argparse


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"ecg-bench {version('ecg-bench')}"


def test_run_flags_have_one_spelling(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["config", "--train.max-steps", "3"])
    assert e.value.code == 2 and "--train.max_steps" in capsys.readouterr().err
    assert cli.main(["config", "--train.max_steps", "3"]) == 0


def test_pretrain_options_parse_into_the_registered_dataclass():
    name, opts = parse_pretrain(["signal2vec", "--store", "s", "--tokenizer", "t", "--out", "o", "--num_samples", "7",
                                 "--skipgram.batch_size", "9", "--skipgram.dim", "8"])  # fmt: skip
    assert name == "signal2vec" and isinstance(opts, PRETRAINERS.get("signal2vec").options)
    assert (opts.store, opts.num_samples, opts.skipgram.batch_size, opts.skipgram.dim) == ("s", 7, 9, 8)
    assert opts.skipgram.window == 5  # untouched options keep their defaults


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pretrain"], "needs a NAME"),
        (["pretrain", "word2vec"], "unknown pretrainer 'word2vec'"),
        (["pretrain", "signal2vec", "--store", "s", "--tokenizer", "t"], "required: --out"),
        (["pretrain", "signal2vec", "--store", "s", "--tokenizer", "t", "--out", "o", "--skipgram.dim", "2.5"],
         "--skipgram.dim: expected an integer"),
    ],
)
def test_pretrain_refuses_bad_arguments_by_name(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
