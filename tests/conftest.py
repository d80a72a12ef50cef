"""Shared fixtures. Real reference data lives in ../shared/data beside the project root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from config_helpers import data_config
from gguf_cache import reuse_gguf_loads

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ECG_BENCH_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core (pyproject addopts); torch's own threads on top would oversubscribe
    # the cores, and the tiny test models gain nothing from them. Subprocesses the tests start inherit this.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


reuse_gguf_loads()

try:  # submitit binds logging handlers to sys.stdout / sys.stderr when first imported: bind them to this process's
    import submitit  # noqa: F401  streams now, not to the capsys streams of whichever test imports it first (closed
except ImportError:  # after that test; a later submitit log line then fails the test that runs it)
    pass


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"reference data folder not found: {SHARED_DATA} (set ECG_BENCH_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _restore_logging():
    """CLI tests call setup_logging, which stops ``ecg_bench`` records propagating; caplog needs them to."""
    import logging

    logger = logging.getLogger("ecg_bench")
    state = (logger.propagate, logger.level, list(logger.handlers))
    yield
    logger.propagate = state[0]
    logger.setLevel(state[1])  # not .level =: setLevel also clears the loggers' cached isEnabledFor answers
    logger.handlers[:] = state[2]


@pytest.fixture(autouse=True)
def _restore_sigint(request):
    """A test that leaves this process ignoring SIGINT would make every later ``ecg-bench`` subprocess ignore Ctrl-C
    (SIG_IGN is inherited), so the Ctrl-C tests would pass or fail by test order (and by xdist's split): put the
    default back, and say which test changed it."""
    import signal
    import warnings

    yield
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        warnings.warn(f"{request.node.nodeid} left SIGINT handled by {signal.getsignal(signal.SIGINT)!r}; restored")
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A small synthetic segment store (12 patients, 2 s segments at 250 Hz)."""
    from ecg_bench.config import DataConfig
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import build_store

    cfg = data_config(num_patients=12, records_per_patient=1, seed=3)
    return build_store(SOURCES.get("synthetic")(cfg), tmp_path_factory.mktemp("tiny") / "store", "synthetic", 250, 500)


@pytest.fixture(scope="session")
def tiny_items(tiny_store):
    from ecg_bench.config import DataConfig
    from ecg_bench.data.mapped.base import MAPPED

    cfg = data_config(num_patients=12, records_per_patient=1, seed=3, multi_turn_fraction=0.3)
    return MAPPED.get("synthetic_qa")(tiny_store, cfg)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A quickstart-style run trained just enough to answer in words (tiny LLM fully fine-tuned, 8 steps):
    (run folder, its final checkpoint). Tests that delete or change files work on copies, except
    test_from_pretrained's store-deletion test, which runs last and needs nothing else afterwards."""
    from ecg_bench import cli
    from ecg_bench.presets import tiny

    out = tmp_path_factory.mktemp("tiny_ckpt") / "run"
    cfg = tiny(str(out))
    cfg.model.full_finetune, cfg.train.max_steps, cfg.train.lr = True, 8, 3e-3
    cfg.save(out.parent / "tiny.json")
    assert cli.main(["run", "--config", str(out.parent / "tiny.json"), "--eval.conditions", "real"]) == 0
    return out, out / "checkpoints" / "final"
