"""ST-MEM / MTAE / MLAE: shapes, MAE pretraining on the synthetic store, the preprocessing contract, ST-MEM's
released key names, and one ELM training step per encoder."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch

from ecg_bench.config import EncoderOptions, ModelConfig, RunConfig, build, choice
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.models.encoders import EncoderSpec, build_encoder
from ecg_bench.models.encoders.mae import (MAEPretrainOptions, MaskedAutoencoder, MtaeOptions, SignalViT, StMemOptions,
                                          auto_patch_size, pretrain_mae)  # fmt: skip
from ecg_bench.models.encoders.mae.encoder import build_vit
from ecg_bench.models.encoders.mae.public import convert_st_mem, map_st_mem
from ecg_bench.models.encoders.pretrain_loop import PretrainLoopOptions
from ecg_bench.models.encoders.weights import read_encoder

SPEC = EncoderSpec(in_leads=12, seq_len=500, out_dim=32, num_tokens=4, fs=250.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """60 synthetic patients, 2 s segments at 250 Hz (300 segments)."""
    from ecg_bench.config import DataConfig, SourceOptions
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import build_store

    cfg = DataConfig(source=choice(SourceOptions, "synthetic", num_patients=60, records_per_patient=1), seed=5)
    return build_store(SOURCES.get("synthetic")(cfg), tmp_path_factory.mktemp("mae") / "store", "synthetic", 250, 500)


def test_patch_size_gives_about_25_patches():
    assert [auto_patch_size(n) for n in (500, 1250, 2500)] == [20, 50, 100]


@pytest.mark.parametrize("layout, tokens", [("st_mem", 12 * 25), ("mtae", 25), ("mlae", 12)])
def test_encoder_shapes_and_masking(layout, tokens):
    torch.manual_seed(0)
    enc = build_encoder(choice(EncoderOptions, layout), SPEC)
    x = torch.randn(2, 12, 500)
    assert enc(x).shape == (2, 4, enc.out_dim) and enc.latents(x).shape == (2, tokens, 64)
    out = MaskedAutoencoder(enc)(x, torch.Generator().manual_seed(0))
    groups, n = out["mask"].shape[1:]
    assert out["pred"].shape[:3] == (2, groups, n) and groups * n == tokens
    assert out["mask"].sum(-1).eq(n - max(1, int(n * 0.25))).all()  # 75 % of each group's patches masked
    with pytest.raises(DataError, match=r"expected shape \[N, 12, 500\]"):
        enc(torch.randn(2, 12, 400))


def test_inference_uses_the_whole_ecg_and_trains_through():
    """No random masking at inference: the same ECG gives the same latents, and gradients reach the encoder."""
    enc = build_encoder(choice(EncoderOptions, "st_mem"), SPEC)
    x = torch.randn(2, 12, 500)
    assert torch.equal(enc(x), enc(x))
    enc(x).sum().backward()
    assert enc.patch_embed[1].weight.grad.abs().sum() > 0
    frozen = build_vit("st_mem", StMemOptions(freeze=True), SPEC)
    assert not any(p.requires_grad for p in frozen.parameters())
    from ecg_bench.models.elm.encoder_elm import EncoderELM

    elm = EncoderELM(torch.nn.Linear(2, 2), frozen, torch.nn.Linear(64, 8), placeholder_id=0, train_encoder=not frozen.opts.freeze)
    assert "encoder" not in elm.trainable_modules()


def test_options_are_checked():
    assert StMemOptions(mask_ratio=1.5, size="huge").problems() == [
        "size must be one of tiny, small, vit_small, base, got 'huge'", "mask_ratio must be in (0, 1), got 1.5"]
    with pytest.raises(ConfigError, match="st_mem encoder: mask_ratio must be in \\(0, 1\\), got 1.5"):
        build_vit("st_mem", StMemOptions(mask_ratio=1.5), SPEC)
    # from the flags of a run: every problem at once, named by its path and encoder
    with pytest.raises(ConfigError) as e:
        build(RunConfig(), overrides={"model.encoder.type": "mtae", "model.encoder.size": "huge", "model.encoder.num_tokens": "0"})
    assert "model.encoder (mtae): size must be one of tiny, small, vit_small, base, got 'huge'" in e.value.problems
    assert "model.encoder (mtae): num_tokens must be >= 1, got 0" in e.value.problems


def test_encoder_chosen_from_flags_and_yaml(tmp_path):
    """``--model.encoder.type st_mem --model.encoder.size small`` and the same in a YAML file reach the builder."""
    cfg = build(RunConfig(), overrides={"model.encoder.type": "st_mem", "model.encoder.size": "small",
                                        "model.encoder.num_tokens": "12", "model.encoder.freeze": "true"})  # fmt: skip
    assert isinstance(cfg.model.encoder, StMemOptions) and (cfg.model.encoder.size, cfg.model.encoder.num_tokens) == ("small", 12)
    enc = build_encoder(cfg.model.encoder, SPEC)
    assert enc.out_dim == 128 and enc.num_tokens == 12 and not any(p.requires_grad for p in enc.parameters())
    (tmp_path / "run.yaml").write_text("model:\n  encoder: {type: mtae, size: small, patch_size: 50}\n")
    cfg = build(RunConfig(), tmp_path / "run.yaml", {"model.encoder.scaling": "zscore"})
    assert isinstance(cfg.model.encoder, MtaeOptions) and cfg.model.encoder.patch_size == 50
    enc = build_encoder(cfg.model.encoder, SPEC)
    assert enc.patch == 50 and enc.opts.scaling == "zscore" and enc(torch.randn(1, 12, 500)).shape == (1, 4, 128)


def test_pretrain_mae_flags(tmp_path):
    """``ecg-bench pretrain mae`` flags: the loop's options as --loop.X; all problems reported together."""
    from config_helpers import parse_pretrain

    name, opts = parse_pretrain(["mae", "--store", "s", "--out", str(tmp_path / "o"), "--encoder", "mlae", "--loop.steps", "7",
                                 "--mask_ratio", "0.5"])  # fmt: skip
    assert name == "mae" and isinstance(opts, MAEPretrainOptions) and opts.loop.steps == 7 and opts.encoder_options().mask_ratio == 0.5
    with pytest.raises(ConfigError) as e:
        parse_pretrain(["mae", "--store", "s", "--out", "o", "--encoder", "vit", "--loop.lr", "0", "--size", "huge"])
    assert "loop.lr must be > 0, got 0.0" in e.value.problems and any("encoder must be one of st_mem, mtae, mlae" in m for m in e.value.problems)
    with pytest.raises(ConfigError, match="pretrain mae needs --store"):
        pretrain_mae(MAEPretrainOptions(out=str(tmp_path / "o")))


@pytest.mark.slow
def test_mae_pretraining_lowers_masked_loss_and_contract_is_checked(store, tmp_path, caplog):
    out = tmp_path / "mtae"
    opts = MAEPretrainOptions(store=str(store.path), out=str(out), encoder="mtae",
                              loop=PretrainLoopOptions(steps=20, batch_size=16, lr=2e-3, log_every=5))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        r = pretrain_mae(opts)
    assert r["eval_loss_end"] < 0.5 * r["eval_loss_start"], r
    assert any("mae/mtae step 20/20" in m for m in caplog.messages)
    doc, tensors = read_encoder(out, "mtae")
    assert doc["contract"] == {"fs": 250.0, "segment_len": 500, "leads": list(doc["contract"]["leads"]), "scaling": "minmax"}
    # the saved weights load into an ELM-side encoder of the same run shape and give the same latents
    enc = build_vit("mtae", MtaeOptions(weights=str(out)), SPEC)
    assert all(torch.equal(v, tensors[k]) for k, v in enc.state_dict().items())
    with pytest.raises(DataError, match="holds weights of encoder 'mtae', not 'st_mem'"):
        build_vit("st_mem", StMemOptions(weights=str(out)), SPEC)
    # a run at another rate or length is refused, naming both sides
    with pytest.raises(DataError, match=r"fs: weights expect 250.0, this run gives 500.0.*segment_len: weights expect 500, this run gives 1000"):
        build_vit("mtae", MtaeOptions(weights=str(out)), dataclasses.replace(SPEC, fs=500.0, seq_len=1000))
    with pytest.raises(DataError, match="scaling: weights expect 'minmax', this run gives 'zscore'"):
        build_vit("mtae", MtaeOptions(weights=str(out), scaling="zscore"), SPEC)
    # a finished run is never written over; --resume continues it to more steps
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        pretrain_mae(opts)


@pytest.mark.slow
def test_resume_is_exact(store, tmp_path, monkeypatch):
    """A run stopped after its step-3 checkpoint and resumed gives the losses of an uninterrupted run."""
    from resume_helpers import pretraining_stopped_at

    def opts(out, resume=False):
        return MAEPretrainOptions(store=str(store.path), out=str(out), encoder="mtae", num_samples=100,
                                  loop=PretrainLoopOptions(steps=6, batch_size=8, save_every=3, resume=resume))  # fmt: skip

    full = pretrain_mae(opts(tmp_path / "a"))["losses"]
    with pretraining_stopped_at(monkeypatch, 4):
        pretrain_mae(opts(tmp_path / "b"))
    with pytest.raises(ConfigError, match="trained with other options \\(size differ\\)"):
        pretrain_mae(dataclasses.replace(opts(tmp_path / "b", resume=True), size="small"))
    assert pretrain_mae(opts(tmp_path / "b", resume=True))["losses"] == pytest.approx(full, rel=1e-5)


def _st_mem_state_dict(width=64, depth=2, mlp=256, patch=20, n=25, leads=12, full=False):
    """A state dict with the key names and shapes of ST-MEM's ST_MEM_ViT (models/encoder/st_mem_vit.py)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = {"to_patch_embedding.1.weight": 1 + r(patch), "to_patch_embedding.1.bias": r(patch),
          "to_patch_embedding.2.weight": r(width, patch), "to_patch_embedding.2.bias": r(width),
          "to_patch_embedding.3.weight": 1 + r(width), "to_patch_embedding.3.bias": r(width),
          "pos_embedding": r(1, n + 2, width), "sep_embedding": r(width),
          "norm.weight": 1 + r(width), "norm.bias": r(width), "head.weight": r(5, width), "head.bias": r(5)}  # fmt: skip
    sd |= {f"lead_embeddings.{i}": r(width) for i in range(leads)}
    for b in range(depth):
        sd |= {f"block{b}.attn.norm.weight": 1 + r(width), f"block{b}.attn.norm.bias": r(width),
               f"block{b}.attn.fn.to_qkv.weight": r(3 * width, width), f"block{b}.attn.fn.to_qkv.bias": r(3 * width),
               f"block{b}.attn.fn.to_out.0.weight": r(width, width), f"block{b}.attn.fn.to_out.0.bias": r(width),
               f"block{b}.ff.norm.weight": 1 + r(width), f"block{b}.ff.norm.bias": r(width),
               f"block{b}.ff.fn.net.0.weight": r(mlp, width), f"block{b}.ff.fn.net.0.bias": r(mlp),
               f"block{b}.ff.fn.net.3.weight": r(width, mlp), f"block{b}.ff.fn.net.3.bias": r(width)}  # fmt: skip
    if full:
        sd = {f"encoder.{k}": v for k, v in sd.items()} | {"mask_embedding": r(1, 1, 256), "decoder_head.weight": r(patch, 256)}
    return sd


def _their_block(x, sd, b, heads):
    """ST-MEM's TransformerBlock (PreNorm attention with to_qkv.chunk(3), then PreNorm GELU MLP), written out."""
    f = torch.nn.functional
    p = lambda k: sd[f"block{b}.{k}"]  # noqa: E731
    h = f.layer_norm(x, x.shape[-1:], p("attn.norm.weight"), p("attn.norm.bias"))
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in f.linear(h, p("attn.fn.to_qkv.weight"), p("attn.fn.to_qkv.bias")).chunk(3, -1))
    att = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v
    x = x + f.linear(att.transpose(1, 2).flatten(2), p("attn.fn.to_out.0.weight"), p("attn.fn.to_out.0.bias"))
    h = f.layer_norm(x, x.shape[-1:], p("ff.norm.weight"), p("ff.norm.bias"))
    return x + f.linear(f.gelu(f.linear(h, p("ff.fn.net.0.weight"), p("ff.fn.net.0.bias"))), p("ff.fn.net.3.weight"), p("ff.fn.net.3.bias"))


@pytest.mark.parametrize("full", [False, True])
def test_st_mem_release_key_mapping(tmp_path, full):
    sd = _st_mem_state_dict(full=full)
    src = tmp_path / "st_mem.pth"
    torch.save({"model": sd, "config": {"model_name": "st_mem_vit_base", "seq_len": 500}, "epoch": 3}, src)
    out = convert_st_mem(src, tmp_path / "converted")
    doc, _ = read_encoder(out, "st_mem")
    assert doc["contract"]["fs"] == 250.0 and doc["contract"]["segment_len"] == 500 and doc["contract"]["scaling"] == "zscore"
    enc = build_vit("st_mem", StMemOptions(weights=str(out), scaling="zscore"), SPEC)
    enc.eval()
    # their forward (patch embedding, positions, SEP, lead embeddings, blocks, norm) written out on the same input
    sd = {k.removeprefix("encoder."): v for k, v in sd.items()}
    x = torch.randn(2, 12, 500)
    xs = (x - x.mean((1, 2), keepdim=True)) / (x.std((1, 2), keepdim=True) + 1e-6)
    f = torch.nn.functional
    h = f.layer_norm(xs.reshape(2, 12, 25, 20), (20,), sd["to_patch_embedding.1.weight"], sd["to_patch_embedding.1.bias"])
    h = f.layer_norm(f.linear(h, sd["to_patch_embedding.2.weight"], sd["to_patch_embedding.2.bias"]), (64,),
                     sd["to_patch_embedding.3.weight"], sd["to_patch_embedding.3.bias"])  # fmt: skip
    pos = enc.pos  # the release's pos_embedding is the same fixed sin-cos table; ours is recomputed
    h = h + pos[1:26]
    sep = sd["sep_embedding"].expand(2, 12, 1, 64)
    h = torch.cat([sep + pos[0], h, sep + pos[-1]], 2) + torch.stack([sd[f"lead_embeddings.{i}"] for i in range(12)])[None, :, None]
    h = h.reshape(2, -1, 64)
    for b in range(2):
        h = _their_block(h, sd, b, heads=2)
    h = f.layer_norm(h, (64,), sd["norm.weight"], sd["norm.bias"]).reshape(2, 12, 27, 64)[:, :, 1:-1].reshape(2, -1, 64)
    torch.testing.assert_close(enc.latents(x), h, atol=1e-4, rtol=1e-4)
    with pytest.raises(DataError, match="not an ST-MEM encoder state dict"):
        map_st_mem({"conv1.weight": torch.zeros(1)})


@pytest.mark.parametrize("name", ["st_mem", "mtae", "mlae"])
def test_each_encoder_trains_one_elm_step(name, tiny_store, tiny_items):
    """The signal representation -> encoder -> projector -> tiny LLM: one optimizer step moves the encoder."""
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.models.elm import build_elm, pad_batch
    from ecg_bench.representations.signal import SignalRepresentation

    torch.manual_seed(0)
    elm, proc = build_elm(ModelConfig(llm="tiny", encoder=choice(EncoderOptions, name, num_tokens=2)), seq_len=500, fs=250.0)
    assert isinstance(elm.encoder, SignalViT) and "encoder" in elm.trainable_modules()
    ds = ConversationDataset(tiny_items[:2], tiny_store, SignalRepresentation())
    enc = [proc.formatter.encode(ds[i]["messages"]) for i in range(len(ds))]
    b = pad_batch([e.input_ids for e in enc], proc.tokenizer.pad_token_id, "right", [e.labels for e in enc])
    b.ecg = torch.cat([ds[i]["ecg"] for i in range(len(ds))])
    before = elm.encoder.patch_embed[1].weight.detach().clone()
    opt = torch.optim.AdamW([p for p in elm.parameters() if p.requires_grad], lr=1e-3)
    loss, n = elm(b.input_ids, b.attention_mask, b.labels, b.ecg)
    (loss / n).backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, elm.encoder.patch_embed[1].weight)
