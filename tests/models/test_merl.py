"""MERL: ResNet tower, CMA + UMA pretraining on the synthetic store with a tiny random BERT, zero-shot, the
released checkpoint's key names, the contract check, one ELM step."""

from __future__ import annotations

import logging

import pytest
import torch
from elm_fixtures import make_tiny_bert
from torch.nn import functional as F

from ecg_bench.config import EncoderOptions, ModelConfig, RunConfig, build, choice
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.models.encoders import EncoderSpec, build_encoder
from ecg_bench.models.encoders.merl import MerlOptions, MerlPretrainOptions, ResNet1d, build_merl, clip_loss, pretrain_merl
from ecg_bench.models.encoders.merl.public import convert_merl, map_merl
from ecg_bench.models.encoders.pretrain_loop import PretrainLoopOptions
from ecg_bench.models.encoders.weights import read_encoder

SPEC = EncoderSpec(in_leads=12, seq_len=500, out_dim=32, num_tokens=4, fs=250.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from ecg_bench.config import DataConfig, SourceOptions
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import build_store

    cfg = DataConfig(source=choice(SourceOptions, "synthetic", num_patients=40, records_per_patient=1), seed=7)
    return build_store(SOURCES.get("synthetic")(cfg), tmp_path_factory.mktemp("merl") / "store", "synthetic", 250, 500)


def test_resnet_shapes():
    enc = build_encoder(choice(EncoderOptions, "merl"), SPEC)
    assert isinstance(enc, ResNet1d) and enc.out_dim == 256
    assert enc.features(torch.randn(2, 12, 500)).shape == (2, 256, 32)  # ceil(500 / 16)
    assert enc(torch.randn(2, 12, 500)).shape == (2, 4, 256)
    frozen = build_merl(MerlOptions(freeze=True), SPEC)
    frozen.train()
    assert not frozen.training  # BatchNorm statistics of a frozen tower never move


def test_merl_options_from_flags_and_checks(tmp_path):
    """``--model.encoder.type merl --model.encoder.size ...`` (flags, YAML) reach the tower; bad values are collected."""
    (tmp_path / "run.yaml").write_text("model:\n  encoder: {type: merl, num_tokens: 2}\n")
    cfg = build(RunConfig(), tmp_path / "run.yaml", {"model.encoder.freeze": "true"})
    assert isinstance(cfg.model.encoder, MerlOptions) and cfg.model.encoder.freeze
    enc = build_encoder(cfg.model.encoder, SPEC)
    assert enc(torch.randn(1, 12, 500)).shape == (1, 2, 256) and not any(p.requires_grad for p in enc.parameters())
    with pytest.raises(ConfigError) as e:
        build(RunConfig(), overrides={"model.encoder.type": "merl", "model.encoder.size": "resnet9", "model.encoder.scaling": "max"})
    assert {"model.encoder (merl): size must be one of tiny, resnet50, base, got 'resnet9'",
            "model.encoder (merl): scaling must be one of minmax, zscore, none, got 'max'"} <= set(e.value.problems)
    with pytest.raises(ConfigError, match="merl encoder: size must be one of"):
        ResNet1d(MerlOptions(size="resnet9"), 12, 500)
    from config_helpers import parse_pretrain

    with pytest.raises(ConfigError) as e:
        parse_pretrain(["merl", "--store", "s", "--out", "o", "--proj_dim", "30", "--loop.batch_size", "0",
                        "--loop.num_threads", "-1"])  # fmt: skip
    assert {"proj_dim must be a positive multiple of 4 (4 attention heads), got 30", "loop.batch_size must be >= 1, got 0",
            "loop.num_threads must be >= 0 (0 = torch's default), got -1"} <= set(e.value.problems)  # fmt: skip
    _, opts = parse_pretrain(["merl", "--store", "s", "--out", "o", "--size", "resnet50", "--loop.steps", "3"])
    assert isinstance(opts, MerlPretrainOptions) and (opts.size, opts.loop.steps) == ("resnet50", 3)


def test_clip_loss_is_symmetric_infonce():
    x = torch.randn(6, 8)
    assert clip_loss(x, x) < clip_loss(x, torch.randn(6, 8))
    sim = F.normalize(x, dim=-1) @ F.normalize(x, dim=-1).T / 0.07
    assert clip_loss(x, x) == pytest.approx(2 * F.cross_entropy(sim, torch.arange(6)).item(), rel=1e-5)


@pytest.mark.slow
def test_merl_pretraining_lowers_contrastive_loss(store, tmp_path, caplog):
    bert = make_tiny_bert(tmp_path / "bert", [row["report"] for row in store.index])
    opts = MerlPretrainOptions(store=str(store.path), out=str(tmp_path / "merl"), text_model=str(bert), proj_dim=32,
                               text_frozen_layers=0, loop=PretrainLoopOptions(steps=20, batch_size=16, lr=2e-3, log_every=5))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        r = pretrain_merl(opts)
    assert r["eval_loss_end"] < 0.8 * r["eval_loss_start"], r
    assert any("merl step 20/20" in m and "cma" in m and "uma" in m for m in caplog.messages)
    doc, _ = read_encoder(tmp_path / "merl", "merl")
    assert doc["contract"]["fs"] == 250.0 and doc["meta"]["text_model"] == str(bert)
    # zero-shot: one score per (ECG, prompt)
    x = torch.randn(3, 12, 500)
    scores = r["model"].zero_shot(x, ["Sinus rhythm.", "Atrial fibrillation.", "Noisy recording."])
    assert scores.shape == (3, 3) and scores.abs().max() <= 1 + 1e-5
    # the ECG tower loads into the ELM-side encoder; a 500 Hz run is refused naming both rates
    enc = build_merl(MerlOptions(weights=str(tmp_path / "merl")), SPEC)
    assert torch.equal(enc.stem[0].weight, r["model"].ecg.stem[0].weight.cpu())
    with pytest.raises(DataError, match="fs: weights expect 250.0, this run gives 500.0"):
        build_merl(MerlOptions(weights=str(tmp_path / "merl")), EncoderSpec(12, 500, 32, 4, fs=500.0))


def test_merl_without_reports_or_text_model_is_a_clear_error(store, tmp_path):
    with pytest.raises(DataError, match="text model .*nope.* could not be loaded"):
        pretrain_merl(MerlPretrainOptions(store=str(store.path), out=str(tmp_path / "m"), text_model=str(tmp_path / "nope")))


def _their_resnet(stem=8, widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), leads=12, prefix=""):
    """A state dict with the key names and shapes of MERL's ResNet(Bottleneck, ...) (utils/resnet1d.py)."""
    g = torch.Generator().manual_seed(1)
    sd = {}

    def bn(name, c):
        sd.update({f"{name}.weight": 1 + 0.1 * torch.randn(c, generator=g), f"{name}.bias": 0.1 * torch.randn(c, generator=g),
                   f"{name}.running_mean": 0.1 * torch.randn(c, generator=g), f"{name}.running_var": 1 + torch.rand(c, generator=g),
                   f"{name}.num_batches_tracked": torch.tensor(7)})  # fmt: skip

    def conv(name, o, i, k):
        sd[f"{name}.weight"] = torch.randn(o, i, k, generator=g) / (i * k) ** 0.5

    conv("conv1", stem, leads, 7)
    bn("bn1", stem)
    c = stem
    for k, (w, d) in enumerate(zip(widths, depths), start=1):
        for j in range(d):
            p = f"layer{k}.{j}"
            conv(f"{p}.conv1", w, c, 1), bn(f"{p}.bn1", w), conv(f"{p}.conv2", w, w, 3), bn(f"{p}.bn2", w)
            conv(f"{p}.conv3", 4 * w, w, 1), bn(f"{p}.bn3", 4 * w)
            if j == 0:
                conv(f"{p}.shortcut.0", 4 * w, c, 1), bn(f"{p}.shortcut.1", 4 * w)
            c = 4 * w
    sd["linear.weight"], sd["linear.bias"] = torch.randn(10, c, generator=g), torch.zeros(10)
    return {prefix + k: v for k, v in sd.items()}


def _their_forward(x, sd, depths=(1, 1, 1, 1)):
    def bn(h, n):
        return F.batch_norm(h, sd[f"{n}.running_mean"], sd[f"{n}.running_var"], sd[f"{n}.weight"], sd[f"{n}.bias"], False)

    h = F.relu(bn(F.conv1d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    for k, d in enumerate(depths, start=1):
        for j in range(d):
            p, stride = f"layer{k}.{j}", (1 if k == 1 else 2) if j == 0 else 1
            o = F.relu(bn(F.conv1d(h, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            o = F.relu(bn(F.conv1d(o, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            o = bn(F.conv1d(o, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            short = bn(F.conv1d(h, sd[f"{p}.shortcut.0.weight"], stride=stride), f"{p}.shortcut.1") if j == 0 else h
            h = F.relu(o + short)
    return h


@pytest.mark.parametrize("prefix", ["", "ecg_encoder."])
def test_merl_release_key_mapping(tmp_path, prefix, capsys):
    from ecg_bench import cli

    sd = _their_resnet(prefix=prefix)
    torch.save(sd, tmp_path / "merl.pth")
    out = convert_merl(tmp_path / "merl.pth", tmp_path / "converted", segment_len=500)
    assert cli.main(["import-encoder", "--format", "merl", "--src", str(tmp_path / "merl.pth"), "--out", str(tmp_path / "cli")]) == 0
    assert read_encoder(tmp_path / "cli", "merl")[0]["contract"]["segment_len"] == 5000  # MERL's 10 s at 500 Hz
    doc, _ = read_encoder(out, "merl")
    assert doc["contract"]["fs"] == 500.0 and doc["contract"]["scaling"] == "minmax"
    enc = build_merl(MerlOptions(weights=str(out)), EncoderSpec(12, 500, 32, 4, fs=500.0)).eval()
    x = torch.randn(2, 12, 500)
    xs = (x - x.amin((1, 2), keepdim=True)) / (x.amax((1, 2), keepdim=True) - x.amin((1, 2), keepdim=True) + 1e-6)
    ref = _their_forward(xs, {k.removeprefix(prefix): v for k, v in sd.items()})
    torch.testing.assert_close(enc.features(x), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(DataError, match="not a MERL ResNet"):
        map_merl({"to_patch_embedding.1.weight": torch.zeros(3)})


class Unpicklable:
    """Stands for any object whose unpickling would import and run code."""


def test_unsafe_checkpoints_are_refused(tmp_path):
    """A pickle that would run code is refused by the weights-only loader, naming the file."""
    from ecg_bench.models.encoders.mae.public import read_torch_checkpoint

    torch.save({"model": Unpicklable()}, tmp_path / "evil.pth")  # a class: not an allowed global for weights_only
    with pytest.raises(DataError, match="evil.pth: not a weights-only torch checkpoint"):
        read_torch_checkpoint(tmp_path / "evil.pth")


def test_merl_trains_one_elm_step(tiny_store, tiny_items):
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.models.elm import build_elm, pad_batch
    from ecg_bench.representations.signal import SignalRepresentation

    torch.manual_seed(0)
    elm, proc = build_elm(ModelConfig(llm="tiny", encoder=choice(EncoderOptions, "merl", num_tokens=2)), seq_len=500, fs=250.0)
    ds = ConversationDataset(tiny_items[:2], tiny_store, SignalRepresentation())
    enc = [proc.formatter.encode(ds[i]["messages"]) for i in range(len(ds))]
    b = pad_batch([e.input_ids for e in enc], proc.tokenizer.pad_token_id, "right", [e.labels for e in enc])
    b.ecg = torch.cat([ds[i]["ecg"] for i in range(len(ds))])
    loss, n = elm(b.input_ids, b.attention_mask, b.labels, b.ecg)
    (loss / n).backward()
    assert torch.isfinite(loss) and elm.encoder.stem[0].weight.grad.abs().sum() > 0
