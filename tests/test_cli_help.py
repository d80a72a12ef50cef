"""Every command's and sub-command's --help runs through ``cli.main`` and shows only what the command uses;
flags have one spelling; --version."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from ecg_bench import cli
from ecg_bench.ecg_byte.commands import ACTIONS
from ecg_bench.models.encoders import PRETRAINERS
from ecg_bench.training.pretrain import parse_pretrain

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


def test_each_command_help_shows_only_what_it_uses(capsys):
    data = _help(("data",), capsys)
    assert "--data.source.type" in data and "--data.fold" in data
    assert "--train." not in data and "--model." not in data and "--eval." not in data
    ev = _help(("evaluate",), capsys)
    assert "--checkpoint" in ev and "--eval.conditions" in ev and "--model." not in ev
    run = _help(("run",), capsys)
    assert "--model.encoder.type" in run and "--model.encoder.hidden" in run and "--train.lr" in run
    assert "Config file for" not in run  # draccus's sub-config file flags are hidden
    assert "--details" in _help(("list",), capsys)


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
