"""Every command's and sub-command's --help runs through ``cli.main``; flags have one spelling; --version."""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from ecg_bench import cli
from ecg_bench.ecg_byte.commands import ACTIONS
from ecg_bench.models.encoders import PRETRAINERS
from ecg_bench.training.pretrain import options_from_args


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path the parser knows, found in the parser itself (so a new command is covered)."""
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((*prefix, name))
                paths += _command_paths(sub, (*prefix, name))
    return paths


PATHS = _command_paths(cli.build_parser())
# positional actions of `tokenizer` (not sub-parsers) get their own --help call too
ALL = [(), *PATHS, *[("tokenizer", a) for a in ACTIONS]]


def test_the_walk_finds_every_command_and_sub_command():
    assert {p[0] for p in PATHS} == set(cli.COMMANDS)
    assert {p[1] for p in PATHS if p[:1] == ("pretrain",) and len(p) == 2} == set(PRETRAINERS.names()) >= {"signal2vec"}


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "ecg-bench")
def test_help_exits_0_with_output(path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([*path, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() and "usage: ecg-bench" in out


def test_pretrain_help_lists_pretrainers_and_each_shows_only_its_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in PRETRAINERS.names()) and "--dim" not in out
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "signal2vec", "--help"])
    out = capsys.readouterr().out
    assert "--num_samples" in out and "--dim" in out and "--train.lr" not in out and "--vocab_size" not in out
    assert "10 %" in out  # a literal % in a field docstring no longer crashes argparse
    assert "--num-samples" not in out  # the dashed alias is accepted but not shown


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"ecg-bench {version('ecg-bench')}"


def test_flags_use_underscores_and_accept_the_old_dashed_spelling():
    parser = cli.build_parser()
    for dashed in (False, True):
        flag = (lambda n: "--" + n.replace("_", "-")) if dashed else (lambda n: "--" + n)
        a = parser.parse_args([flag("log_level"), "DEBUG", "tokenizer", "train", flag("vocab_size"), "77", flag("num_samples"),
                               "5", flag("clip_percentiles"), "1", "99", flag("batch_size"), "3"])  # fmt: skip
        assert a.log_level == "DEBUG"
        assert (a.vocab_size, a.num_samples, a.clip_percentiles, a.batch_size) == (77, 5, [1.0, 99.0], 3)
        b = parser.parse_args(["pretrain", "signal2vec", "--store", "s", "--tokenizer", "t", "--out", "o",
                               flag("num_samples"), "7", flag("batch_size"), "9", "--dim", "8"])  # fmt: skip
        opts = options_from_args(PRETRAINERS.get(b.pretrainer).options, b)
        assert (opts.store, opts.num_samples, opts.skipgram.batch_size, opts.skipgram.dim) == ("s", 7, 9, 8)
        assert opts.skipgram.window == 5  # untouched options keep their defaults
    long_options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    assert "--log_level" in long_options


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pretrain"], "required: NAME"),
        (["pretrain", "word2vec"], "invalid choice: 'word2vec'"),
        (["pretrain", "signal2vec", "--store", "s", "--tokenizer", "t"], "required: --out"),
        (["pretrain", "signal2vec", "--store", "s", "--tokenizer", "t", "--out", "o", "--dim", "2.5"], "--dim: expected an"),
    ],
)
def test_pretrain_refuses_bad_arguments_by_name(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
