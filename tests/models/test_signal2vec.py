"""Signal2Vec: skip-gram pairs, subsampling, training on structured sequences, files, and the encoder in a llava ELM."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecg_bench import cli
from ecg_bench.config import ModelConfig, RunConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.ecg_byte import train_tokenizer
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.models.elm import build_elm
from ecg_bench.models.encoders import EncoderSpec, build_encoder
from ecg_bench.models.encoders.base import encoder_spec
from ecg_bench.models.encoders.signal2vec import (
    Signal2Vec,
    Signal2VecConfig,
    keep_probability,
    skipgram_pairs,
    train_signal2vec,
)
from ecg_bench.representations.signal import SignalRepresentation
from ecg_bench.training.trainer import Trainer
from config_helpers import model_config
from ecg_bench.config import EncoderOptions, choice

GROUPS, PER_GROUP = 4, 10


def _grouped_corpus(n_seqs: int = 200, length: int = 30, seed: int = 0) -> list[np.ndarray]:
    """Each sequence draws its tokens from one group of 10 ids: tokens of a group co-occur, others never."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, PER_GROUP, length) + PER_GROUP * rng.integers(GROUPS) for _ in range(n_seqs)]


def test_pairs_stay_inside_a_sequence_and_the_window():
    seqs = [np.arange(0, 6), np.arange(100, 104)]
    keep = np.ones(200)
    pairs = skipgram_pairs(seqs, 1, keep, np.random.default_rng(0))
    assert len(pairs) == 2 * (5 + 3)  # window 1: each neighbour pair in both directions
    assert set(map(tuple, pairs.tolist())) == {(a, a + 1) for a in [*range(5), *range(100, 103)]} | {
        (a + 1, a) for a in [*range(5), *range(100, 103)]
    }
    wide = skipgram_pairs(seqs, 3, keep, np.random.default_rng(0))
    assert (np.abs(wide[:, 0] - wide[:, 1]) <= 3).all() and ((wide < 100).all(1) | (wide >= 100).all(1)).all()


def test_subsampling_drops_frequent_tokens_only():
    counts = np.array([9000.0, 900.0, 90.0, 10.0, 0.0])
    p = keep_probability(counts, 1e-2)
    f = counts[0] / counts.sum()
    assert p[0] == pytest.approx((np.sqrt(f / 1e-2) + 1) * 1e-2 / f)
    assert p[0] < p[1] < 1.0 and p[3] == p[4] == 1.0
    assert (keep_probability(counts, 0.0) == 1.0).all()


def test_skipgram_learns_which_tokens_co_occur(tmp_path):
    cfg = Signal2VecConfig(dim=16, window=3, negatives=5, subsample=1e-2, epochs=3, batch_size=512, lr=0.03)
    s2v = train_signal2vec(_grouped_corpus(), GROUPS * PER_GROUP, cfg)
    losses = s2v.meta["epoch_losses"]
    assert losses[-1] < 0.8 * losses[0]
    v = torch.nn.functional.normalize(s2v.input, dim=1)
    cos = v @ v.T
    group = torch.arange(GROUPS * PER_GROUP) // PER_GROUP
    same = (group[:, None] == group[None]) & ~torch.eye(len(group), dtype=torch.bool)
    other = group[:, None] != group[None]
    assert cos[same].mean() > cos[other].mean() + 0.4
    # files: safetensors + JSON, loaded back exactly; a wrong format is refused
    path = s2v.save(tmp_path / "s2v.safetensors")
    back = Signal2Vec.load(path)
    assert torch.equal(back.input, s2v.input) and back.config == cfg and back.meta["epoch_losses"] == losses
    doc = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**doc, "format": "pickle"}))
    with pytest.raises(DataError, match="format"):
        Signal2Vec.load(path)
    with pytest.raises(ConfigError, match="window"):
        train_signal2vec(_grouped_corpus(4), 40, Signal2VecConfig(window=0))


@pytest.fixture(scope="module")
def s2v_files(tiny_store, tmp_path_factory):
    """An ECG-Byte tokenizer and Signal2Vec vectors trained on the tiny store through ``ecg-bench pretrain``."""
    d = tmp_path_factory.mktemp("s2v")
    tok = train_tokenizer(tiny_store, vocab_size=48, num_samples=0).save(d / "tok.json")
    args = ["--store", str(tiny_store.path), "--tokenizer", str(tok), "--out", str(d / "s2v.safetensors"),
            "--num_samples", "12", "--skipgram.dim", "16", "--skipgram.epochs", "1", "--skipgram.batch_size", "4096"]  # fmt: skip
    assert cli.main(["pretrain", "signal2vec", *args]) == 0
    assert Signal2Vec.load(d / "s2v.safetensors").dim == 16
    return str(tok), str(d / "s2v.safetensors")


def test_encoder_pools_token_vectors_into_chunks(s2v_files, tiny_store):
    tok, weights = s2v_files
    s2v = choice(EncoderOptions, "signal2vec", tokenizer=tok, weights=weights, num_tokens=12)
    enc = build_encoder(s2v, encoder_spec(s2v, 12, 500, 250.0))
    x = torch.from_numpy(tiny_store.signals([0, 1, 2]))
    y = enc(x)
    assert y.shape == (3, 12, 16) and enc.out_dim == 16 and enc.num_tokens == 12 and torch.isfinite(y).all()
    # chunk k averages the vectors of the tokens centred in lead k (12 chunks = 12 leads)
    ids = np.asarray(enc.rep.tokenizer.encode_signal(tiny_store.signal(1)))
    lens = enc.token_len[ids]
    lead = ((np.cumsum(lens) - lens / 2) // 500).astype(int)
    want = torch.stack([enc.embed.weight[torch.from_numpy(ids[lead == k])].mean(0) for k in range(12)])
    torch.testing.assert_close(y[1], want)
    y.sum().backward()
    assert enc.embed.weight.grad.abs().sum() > 0  # fine-tunable
    with pytest.raises(ConfigError, match="model.encoder.weights"):
        build_encoder(choice(EncoderOptions, "signal2vec", tokenizer=tok), EncoderSpec(12, 500, 16, 4, tokenizer=tok))
    other = train_tokenizer(tiny_store, vocab_size=40, num_samples=0).save(tiny_store.path.parent / "other_tok.json")
    with pytest.raises(DataError, match="not trained with"):
        build_encoder(choice(EncoderOptions, "signal2vec"), EncoderSpec(12, 500, 16, 4, tokenizer=str(other), weights=weights))


def test_llava_with_signal2vec_trains_a_step(s2v_files, tiny_store, tiny_items, tmp_path):
    tok, weights = s2v_files
    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(llm="tiny", encoder=choice(EncoderOptions, "signal2vec", tokenizer=tok, weights=weights,
                                                                 num_tokens=4)))  # fmt: skip
    cfg.train.max_steps, cfg.train.batch_size = 2, 4
    cfg.validate()
    elm, proc = build_elm(cfg.model, seq_len=500, fs=250.0)
    assert elm.tokens_per_ecg == 4 and elm.projector[0].in_features == 16
    before = {k: v.detach().clone() for k, v in elm.trainable_modules()["encoder"].state_dict().items()}
    proj = elm.projector[0].weight.detach().clone()
    tr = Trainer(elm, proc, ConversationDataset(tiny_items[:8], tiny_store, SignalRepresentation()), cfg, tmp_path)
    assert np.isfinite(tr.train_step(0))
    assert not torch.equal(elm.projector[0].weight, proj)
    assert not torch.equal(elm.encoder.embed.weight, before["embed.weight"])
    with pytest.raises(ConfigError, match="signal2vec"):
        RunConfig(model=model_config(encoder="signal2vec", tokenizer=tok)).validate()


def test_signal2vec_checkpoint_stands_alone(s2v_files, tmp_path):
    """llava + signal2vec through pipeline.run; the checkpoint carries tokenizer and vectors, so evaluating it
    still works (same predictions) after the files the run was configured with are gone."""
    import shutil

    from ecg_bench.pipeline import run
    from ecg_bench.presets import tiny

    src = tmp_path / "inputs"
    src.mkdir()
    tok = shutil.copy(s2v_files[0], src / "tok.json")
    weights = shutil.copy(s2v_files[1], src / "s2v.safetensors")
    shutil.copy(s2v_files[1].replace(".safetensors", ".json"), src / "s2v.json")
    cfg = tiny(str(tmp_path / "run"))
    cfg.model.encoder = choice(EncoderOptions, "signal2vec", tokenizer=str(tok), weights=str(weights))
    cfg.data.max_eval_items = 4
    res = run(cfg)
    ck = tmp_path / "run" / "checkpoints" / "final"
    for f in ("ecg_byte_tokenizer.json", "signal2vec.safetensors", "signal2vec.json", "encoder.safetensors"):
        assert (ck / f).is_file(), f
    shutil.rmtree(src)
    argv = ["evaluate", "--checkpoint", str(ck), "--output_dir", str(tmp_path / "eval"), "--eval.conditions", "real"]
    assert cli.main(argv) == 0
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert again["config"]["model"]["encoder"]["weights"] == str(ck / "signal2vec.safetensors")
    assert [s["prediction"] for s in again["samples"]] == [s["prediction"] for s in res["samples"] if s["condition"] == "real"]
