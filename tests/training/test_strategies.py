"""One-process checks of the distributed options: strategy resolution, the torchrun launcher of
``ecg-bench run --nproc``, length-grouped batches, gradient checkpointing. (Two-process runs: test_distributed.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dist_workers import first_step_grads, make_trainer

from ecg_bench import cli
from ecg_bench.errors import ConfigError
from ecg_bench.training.distributed import resolve_strategy


def test_strategy_resolution_and_refusals():
    assert resolve_strategy("auto", 1) == "single" and resolve_strategy("auto", 4) == "ddp"
    assert resolve_strategy("fsdp", 1) == "fsdp"
    with pytest.raises(ConfigError, match="'single' but 2 processes"):
        resolve_strategy("single", 2)
    from ecg_bench.config import RunConfig

    cfg = RunConfig()
    cfg.train.strategy, cfg.train.group_by_length = "deepspeed", -1
    problems = "\n".join(cfg.problems())
    assert "train.strategy must be auto, single, ddp or fsdp, got 'deepspeed'" in problems
    assert "train.group_by_length must be >= 0 (0 = off), got -1" in problems


def test_nproc_relaunches_the_same_command_under_torchrun(monkeypatch):
    import torch.distributed.run as trun

    seen = {}
    monkeypatch.setattr(trun, "run", lambda args: seen.update(vars(args)))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    argv = ["--log_level", "WARNING", "run", "--nproc", "2", "--model.llm", "tiny", "--train.strategy", "fsdp",
            "--train.max_steps", "3"]  # fmt: skip
    assert cli.main(argv) == 0
    assert seen["nproc_per_node"] == "2" and seen["standalone"] and seen["module"]
    assert seen["training_script"] == "ecg_bench"
    assert seen["training_script_args"] == ["--log_level", "WARNING", "run", "--model.llm", "tiny", "--train.strategy",
                                            "fsdp", "--train.max_steps", "3"]  # fmt: skip
    seen.clear()
    assert cli.main(["quickstart", "--nproc=3", "--train.strategy", "ddp"]) == 0
    assert seen["nproc_per_node"] == "3" and seen["training_script_args"] == ["quickstart", "--train.strategy", "ddp"]


def test_evaluate_nproc_relaunches_into_one_output_folder(monkeypatch, tmp_path):
    """Every evaluating process must write into the one eval-<time> folder chosen before launching."""
    import torch.distributed.run as trun

    from ecg_bench.config import RunConfig

    from elm_fixtures import write_config_only_checkpoint

    trained = RunConfig()
    trained.model.llm = "tiny"
    ck = write_config_only_checkpoint(tmp_path / "ck", trained.to_dict())
    seen = {}
    monkeypatch.setattr(trun, "run", lambda args: seen.update(vars(args)))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert cli.main(["evaluate", "--checkpoint", str(ck), "--nproc", "2", "--train.strategy", "ddp"]) == 0
    rest = seen["training_script_args"]
    assert seen["nproc_per_node"] == "2" and "--nproc" not in rest
    assert rest[:5] == ["evaluate", "--checkpoint", str(ck), "--train.strategy", "ddp"]
    assert rest[5] == "--output_dir" and rest[6].startswith(str(ck / "eval-")) and len(rest) == 7
    seen.clear()
    assert cli.main(["evaluate", "--checkpoint", str(ck), "--nproc", "2", "--output_dir", str(tmp_path / "mine")]) == 0
    assert seen["training_script_args"] == ["evaluate", "--checkpoint", str(ck), "--output_dir", str(tmp_path / "mine")]
    assert not any(ck.glob("eval-*"))  # launching created no folder: the processes claim it


def test_nproc_checks_the_config_before_launching(monkeypatch, capsys):
    import torch.distributed.run as trun

    monkeypatch.setattr(trun, "run", lambda args: pytest.fail("launched despite a bad config"))
    assert cli.main(["run", "--nproc", "2", "--train.strategy", "horovod"]) == 2
    assert "train.strategy must be auto, single, ddp or fsdp, got 'horovod'" in capsys.readouterr().err
    assert cli.main(["run", "--nproc", "2", "--train.strategy", "single"]) == 2
    assert "train.strategy 'single' but 2 processes" in capsys.readouterr().err
    for bad in ("0", "two", "1.5"):
        assert cli.main(["run", "--nproc", bad]) == 2
        assert f"nproc must be an integer >= 1 (processes on this machine, one per GPU), got {bad!r}".replace("'", "") in \
            capsys.readouterr().err.replace("'", "")


def test_nproc_is_a_launch_option_not_saved_in_the_run_config(capsys):
    """``--nproc`` is in run's and evaluate's --help (a field of the command config), not in RunConfig: a config file
    or checkpoint never carries it."""
    from ecg_bench.config import RunConfig

    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "--nproc INT = 1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "--nproc INT = 1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # config prints a RunConfig, which has no nproc
        cli.main(["config", "--nproc", "2"])
    assert e.value.code == 2 and "unrecognized arguments: --nproc 2" in capsys.readouterr().err
    assert "nproc" not in RunConfig().to_dict() and "nproc" not in RunConfig().to_dict()["train"]


def test_length_grouped_batches_pad_less_and_stay_a_function_of_seed_and_step(tiny_store, tiny_items, tmp_path):
    items = tiny_items[:16]
    plain = make_trainer(str(tiny_store.path), items, tmp_path / "a", batch_size=2, max_steps=8)
    grouped = make_trainer(str(tiny_store.path), items, tmp_path / "b", batch_size=2, max_steps=8, group_by_length=4)
    again = make_trainer(str(tiny_store.path), items, tmp_path / "c", batch_size=2, max_steps=8, group_by_length=4)
    lengths = grouped._lengths
    steps = range(8)  # one epoch: 16 items in micro-batches of 2
    a = [plain.micro_batches(s)[0] for s in steps]
    b = [grouped.micro_batches(s)[0] for s in steps]
    assert b == [again.micro_batches(s)[0] for s in reversed(steps)][::-1]  # any order of asking, same batches
    assert sorted(sum(a, [])) == sorted(sum(b, [])) == list(range(16))  # every example once per epoch

    def padded(batches):
        return sum(len(ix) * max(lengths[ix]) for ix in map(np.array, batches))

    assert padded(b) < padded(a)
    for s in range(2):  # the counters the run reports
        grouped.train_step(s)
    assert grouped.real_tokens == int(lengths[np.array(b[:2])].sum())
    assert 0 < grouped.real_token_fraction <= 1 and grouped.computed_tokens == padded(b[:2])


def test_gradient_checkpointing_gives_the_same_gradients(tiny_store, tiny_items, tmp_path):
    items = tiny_items[:8]
    base = make_trainer(str(tiny_store.path), items, tmp_path / "a", batch_size=4)
    ckpt = make_trainer(str(tiny_store.path), items, tmp_path / "b", batch_size=4, gradient_checkpointing=True)
    assert ckpt.elm.base_llm.get_decoder().gradient_checkpointing
    (la, ga), (lb, gb) = first_step_grads(base), first_step_grads(ckpt)
    assert la == pytest.approx(lb, rel=1e-6) and ga.keys() == gb.keys() and any("lora_" in k for k in ga)
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-5, atol=1e-8)


def test_packed_rows_train_exactly_like_padded_rows(tiny_store, tiny_items, tmp_path):
    """Several conversations per row, position ids restarting, attention kept inside each: the same loss and
    gradients as one conversation per padded row (a mask that let samples see each other would change both)."""
    items = tiny_items[:8]
    padded = make_trainer(str(tiny_store.path), items, tmp_path / "a", batch_size=8)
    packed = make_trainer(str(tiny_store.path), items, tmp_path / "b", batch_size=8, packing=256)
    batch = packed.collate(packed.micro_batches(0)[0])
    assert batch.position_ids is not None and batch.input_ids.shape[0] < 8  # several conversations share a row
    starts = (batch.position_ids == 0) & (batch.attention_mask == 1)
    assert int(starts.sum()) == 8 and bool((batch.labels[starts] == -100).all())
    (la, ga), (lb, gb) = first_step_grads(padded), first_step_grads(packed)
    assert la == pytest.approx(lb, rel=1e-5) and any("lora_" in k for k in ga) and any("encoder" in k for k in ga)
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-7)
    assert packed.real_tokens == padded.real_tokens and packed.computed_tokens < padded.computed_tokens


def test_packing_shorter_than_max_length_is_refused():
    from ecg_bench.config import RunConfig

    cfg = RunConfig()
    cfg.model.max_length, cfg.train.packing = 256, 128
    assert any("train.packing 128 is shorter than model.max_length 256" in p for p in cfg.problems())
