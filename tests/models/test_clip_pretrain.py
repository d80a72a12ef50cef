"""``ecg-bench pretrain clip``: image-report contrastive pretraining of the vision encoders on printed ECGs, with tiny
random towers (CLIP / SigLIP vision, BERT text) saved to folders: the loss falls, resume is exact, the saved tower
loads as ``--model.encoder.weights`` (contract checked) and trains in an ELM, bad input is a clear error."""

from __future__ import annotations

import json
import logging
import math
import shutil

import pytest
import torch
from elm_fixtures import make_tiny_bert, save_tiny_vision_model
from torch.nn import functional as F

from ecg_bench import cli
from ecg_bench.config import EncoderOptions, RepresentationOptions, RunConfig, build, choice, to_dict
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.models.encoders import EncoderSpec, build_encoder
from ecg_bench.models.encoders.clip import ClipPretrainOptions, infonce_loss, pretrain_clip, sigmoid_loss
from ecg_bench.models.encoders.pretrain_loop import PretrainLoopOptions
from ecg_bench.models.encoders.weights import read_encoder
from ecg_bench.representations.base import build_representation
from ecg_bench.safe_files import load_safetensors
from config_helpers import parse_pretrain

IMAGE = {"width": 64, "height": 64}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads wait on each other (these tests ran 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """200 synthetic 2-s segments at 250 Hz (40 records, each with its report)."""
    from ecg_bench.config import DataConfig, SourceOptions
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import build_store

    cfg = DataConfig(source=choice(SourceOptions, "synthetic", num_patients=40, records_per_patient=1), seed=7)
    return build_store(SOURCES.get("synthetic")(cfg), tmp_path_factory.mktemp("clip") / "store", "synthetic", 250, 500)


@pytest.fixture(scope="module")
def towers(store, tmp_path_factory):
    """Tiny random towers; weights of std 0.2 and no dropout, so that a 1-layer tower's output already differs between
    inputs (at the families' 0.02 every picture and report gets nearly the same vector: nothing to contrast)."""
    root = tmp_path_factory.mktemp("towers")
    out = {f: save_tiny_vision_model(f, root / f, init=0.2) for f in ("clip", "siglip", "vit", "siglip2")}
    out["bert"] = str(make_tiny_bert(root / "bert", [row["report"] for row in store.index], init=0.2, dropout=0.0))
    return out


def _rep(kind="image", **options):
    return choice(RepresentationOptions, kind, **({**IMAGE, **options} if kind == "image" else options))


def _opts(store, towers, out, family="clip", image=None, representation="image", **loop) -> ClipPretrainOptions:
    return ClipPretrainOptions(store=str(store.path), out=str(out), encoder=family, vision_model=towers[family],
                               text_model=towers["bert"], text_frozen_layers=0, max_text_len=64, proj_dim=32,
                               representation=_rep(representation, **(image or {})),
                               loop=PretrainLoopOptions(**{"steps": 30, "batch_size": 16, "lr": 5e-3, "log_every": 10,
                                                           **loop}))  # fmt: skip


def _spec(fs=250.0, kind="image", **options) -> EncoderSpec:
    """What an ELM hands the encoder builder for 500-sample segments drawn by ``kind`` with ``options``."""
    rep = _rep(kind, **options)
    shape = build_representation(rep, fs).output(500).shape
    return EncoderSpec(12, 500, 16, 2, fs=fs, input_kind="image", input_shape=shape, representation=to_dict(rep))


def test_losses_are_clip_infonce_and_siglip_sigmoid():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 5, generator=g) * 3
    labels = torch.arange(5)
    want = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert infonce_loss(logits).item() == pytest.approx(want.item(), rel=1e-6)
    pairs = [-math.log(1 / (1 + math.exp(-(1 if i == j else -1) * logits[i, j].item()))) for i in range(5) for j in range(5)]
    assert sigmoid_loss(logits).item() == pytest.approx(sum(pairs) / 5, rel=1e-5)
    matched = torch.eye(5) * 10
    assert infonce_loss(matched) < infonce_loss(matched.flip(0)) and sigmoid_loss(matched) < sigmoid_loss(matched.flip(0))


@pytest.mark.parametrize(
    "family,loss,kind", [("clip", "clip", "image"), ("siglip", "sigmoid", "image"), ("vit", "clip", "stacked"),
                         ("siglip2", "sigmoid", "image")]
)  # fmt: skip
def test_pretraining_lowers_the_loss_and_saves_a_tower_that_loads_with_its_contract(family, loss, kind, store, towers,
                                                                                    tmp_path, caplog):  # fmt: skip
    out = tmp_path / family
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        r = pretrain_clip(_opts(store, towers, out, family, representation=kind, steps=60))
    start, end = r["eval_loss_start"], r["eval_loss_end"]
    if loss == "clip":  # below chance (every report equally likely: log 32 on the held batch), and finding more reports
        assert end < start - 0.3 and end < math.log(32) - 0.2 and r["top1_end"] > r["top1_start"], r
    else:  # SigLIP's loss starts high (bias -10, temperature 10) and falls as the bias and the pairs are learned
        assert end < 0.6 * start, r
    assert any("clip step 60/60 loss" in m and "scale" in m for m in caplog.messages)
    assert r["model"].loss_name == loss
    scores = r["model"].zero_shot(torch.rand(3, *_spec(kind=kind).input_shape) * 255, ["Sinus rhythm.", "Atrial fibrillation."])
    assert scores.shape == (3, 2) and scores.abs().max() <= 1 + 1e-5  # cosine of each picture with each prompt

    doc, _ = read_encoder(out, family)
    drawing = {k: v for k, v in to_dict(_rep(kind)).items() if k not in ("augment", "seed")}
    assert doc["contract"] == {"fs": 250.0, "segment_len": 500, "leads": doc["contract"]["leads"], "scaling": "none",
                               "representation": drawing}  # fmt: skip
    assert doc["meta"]["loss"] == loss and doc["meta"]["eval_loss_end"] == end and doc["meta"]["step"] == 60
    # the ELM-side encoder (--model.encoder.type FAMILY --model.encoder.weights DIR) is the trained tower
    spec = _spec(kind=kind)
    enc = build_encoder(choice(EncoderOptions, family, weights=str(out), num_tokens=2), spec).eval()
    trained = r["model"].vision.eval()
    assert all(torch.equal(v, trained.state_dict()[k].cpu()) for k, v in enc.state_dict().items())
    x = torch.rand(2, *spec.input_shape) * 255
    with torch.no_grad():
        torch.testing.assert_close(enc.embed(x), trained.embed(x))
        assert enc(x).shape == (2, 2, 16)
    # drawn otherwise, sampled otherwise, another family, or both a hub model and weights: refused, naming both sides
    if kind == "image":
        with pytest.raises(DataError, match="model.representation.layout: weights expect '3x4', this run gives '6x2'"):
            build_encoder(choice(EncoderOptions, family, weights=str(out)), _spec(layout="6x2"))
    else:
        with pytest.raises(DataError, match="model.representation.type: weights expect 'stacked', this run gives 'image'"):
            build_encoder(choice(EncoderOptions, family, weights=str(out)), _spec())
    with pytest.raises(DataError, match="fs: weights expect 250.0, this run gives 500.0"):
        build_encoder(choice(EncoderOptions, family, weights=str(out)), _spec(fs=500.0, kind=kind))
    other = "clip" if family == "vit" else "vit"
    with pytest.raises(DataError, match=f"holds weights of encoder '{family}', not '{other}'"):
        build_encoder(choice(EncoderOptions, other, weights=str(out)), spec)
    with pytest.raises(ConfigError, match="set model .* or weights .*, not both"):
        build_encoder(choice(EncoderOptions, family, weights=str(out), model=towers[family]), spec)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    doc["architecture"].pop("normalization")
    (broken / "encoder.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="encoder.json: architecture needs the model's config and normalization"):
        build_encoder(choice(EncoderOptions, family, weights=str(broken)), spec)


def test_resume_is_exact_with_augmentations(store, towers, tmp_path, capsys, monkeypatch):
    """A run stopped after its step-3 checkpoint and resumed from the command line gives the losses and weights of an
    uninterrupted run (augmented pictures, batch order and dropout are functions of seed and step)."""
    from resume_helpers import pretraining_stopped_at

    kw = {"image": {"augment": True}, "steps": 6, "batch_size": 8, "save_every": 3}
    straight = pretrain_clip(_opts(store, towers, tmp_path / "a", **kw))
    with pretraining_stopped_at(monkeypatch, 4):
        pretrain_clip(_opts(store, towers, tmp_path / "b", **kw))
    assert json.loads((tmp_path / "b" / "pretrain_state.json").read_text())["step"] == 3
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        pretrain_clip(_opts(store, towers, tmp_path / "b", **kw))
    with pytest.raises(ConfigError, match="other options \\(proj_dim differ\\)"):
        pretrain_clip(ClipPretrainOptions(**{**vars(_opts(store, towers, tmp_path / "b", resume=True, **kw)), "proj_dim": 16}))
    flags = ["pretrain", "clip", "--store", str(store.path), "--out", str(tmp_path / "b"), "--vision_model", towers["clip"],
             "--text_model", towers["bert"], "--text_frozen_layers", "0", "--max_text_len", "64", "--proj_dim", "32",
             "--representation.width", "64", "--representation.height", "64", "--representation.augment", "true",
             "--loop.steps", "6", "--loop.batch_size", "8", "--loop.lr", "5e-3", "--loop.log_every", "10",
             "--loop.resume", "true"]  # fmt: skip
    assert cli.main(flags) == 0
    assert "image->report top-1" in capsys.readouterr().out
    state = json.loads((tmp_path / "b" / "pretrain_state.json").read_text())
    assert state["step"] == 6 and state["losses"] == straight["losses"] and len(straight["losses"]) == 6
    assert state["meta"]["eval_loss_start"] == straight["eval_loss_start"]
    a, b = load_safetensors(tmp_path / "a" / "encoder.safetensors"), load_safetensors(tmp_path / "b" / "encoder.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_tower_trains_in_an_elm_from_flags(store, towers, tmp_path, tiny_store, tiny_items):
    """``--model.representation.type image ... --model.encoder.type clip --model.encoder.weights DIR``: one ELM step on
    printouts of the tiny store sends gradients into the pretrained tower."""
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.models.elm import build_elm, pad_batch
    from ecg_bench.representations.base import build_representation

    pretrain_clip(_opts(store, towers, tmp_path / "enc", steps=2, batch_size=4))
    flags = {"model.llm": "tiny", "model.representation.type": "image", "model.representation.width": "64",
             "model.representation.height": "64", "model.encoder.type": "clip", "model.encoder.weights": str(tmp_path / "enc"),
             "model.encoder.num_tokens": "2"}  # fmt: skip
    cfg = build(RunConfig(), overrides=flags)
    rep = build_representation(cfg.model.representation, fs=tiny_store.fs)
    torch.manual_seed(0)
    elm, proc = build_elm(cfg.model, seq_len=tiny_store.segment_len, fs=tiny_store.fs, kind="image", shape=rep.output(500).shape)
    enc_weights = load_safetensors(tmp_path / "enc" / "encoder.safetensors")
    assert all(torch.equal(v, enc_weights[k]) for k, v in elm.encoder.state_dict().items())
    ds = ConversationDataset(tiny_items[:2], tiny_store, rep)
    enc = [proc.formatter.encode(ds[i]["messages"]) for i in range(len(ds))]
    b = pad_batch([e.input_ids for e in enc], proc.tokenizer.pad_token_id, "right", [e.labels for e in enc])
    b.ecg = torch.cat([ds[i]["ecg"] for i in range(len(ds))])
    loss, n = elm(b.input_ids, b.attention_mask, b.labels, b.ecg)
    (loss / n).backward()
    grad = elm.encoder.model.embeddings.patch_embedding.weight.grad
    assert torch.isfinite(loss) and grad is not None and grad.abs().sum() > 0
    with pytest.raises(DataError, match="model.representation.layout: weights expect '3x4', this run gives '12x1'"):
        build_elm(build(cfg, overrides={"model.representation.layout": "12x1"}).model, seq_len=500, fs=250.0, kind="image",
                  shape=(3, 64, 64))  # fmt: skip


def test_bad_input_is_a_clear_error_before_training(store, towers, tmp_path):
    with pytest.raises(ConfigError) as e:
        parse_pretrain(["clip", "--store", "s", "--out", "o", "--encoder", "resnet", "--loss", "hinge", "--text_pooling", "max",
                        "--representation.width", "8", "--loop.batch_size", "1"])  # fmt: skip
    assert set(e.value.problems) == {
        "encoder must be one of vit, clip, siglip, siglip2, got 'resnet'",
        "loss must be one of auto, clip, sigmoid, got 'hinge'",
        "text_pooling must be one of pooler, cls, mean, got 'max'",
        "representation (image): width must be an integer in [32, 8192] pixels, got 8",
        "loop.batch_size must be >= 2 (the batch's other reports are the negatives), got 1",
    }
    with pytest.raises(
        ConfigError, match="representation must draw a picture for the vision encoder \\(image, stacked\\), got 'signal'"
    ):
        parse_pretrain(["clip", "--store", "s", "--out", "o", "--representation.type", "signal"])
    _, opts = parse_pretrain(["clip", "--store", "s", "--out", "o", "--encoder", "siglip2", "--representation.layout", "6x2"])
    assert opts.loss_name() == "sigmoid" and opts.representation.layout == "6x2" and opts.encoder == "siglip2"

    no_reports = tmp_path / "no_reports"
    shutil.copytree(store.path, no_reports)
    rows = [json.loads(line) for line in (no_reports / "index.jsonl").read_text().splitlines()]
    (no_reports / "index.jsonl").write_text("".join(json.dumps({**row, "report": ""}) + "\n" for row in rows))
    with pytest.raises(DataError, match="0 segments have a report; image-report pretraining needs reports"):
        pretrain_clip(ClipPretrainOptions(**{**vars(_opts(store, towers, tmp_path / "o1")), "store": str(no_reports)}))
    with pytest.raises(DataError, match="text model .*nope.* could not be loaded"):
        pretrain_clip(
            ClipPretrainOptions(**{**vars(_opts(store, towers, tmp_path / "o2")), "text_model": str(tmp_path / "nope")})
        )
    with pytest.raises(DataError, match="clip encoder: cannot load the image processor of .*nope"):
        pretrain_clip(
            ClipPretrainOptions(**{**vars(_opts(store, towers, tmp_path / "o3")), "vision_model": str(tmp_path / "nope")})
        )
    with pytest.raises(ConfigError, match="max_text_len 128 exceeds the text model's max_position_embeddings 64"):
        pretrain_clip(ClipPretrainOptions(**{**vars(_opts(store, towers, tmp_path / "o4")), "max_text_len": 128}))
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))  # nothing written


@pytest.mark.slow
def test_a_run_with_the_frozen_pretrained_tower_saves_a_checkpoint_that_loads(store, towers, tmp_path, monkeypatch):
    """``ecg-bench run ... --model.encoder.weights DIR --model.encoder.freeze true`` trains and evaluates; its checkpoint
    carries a copy of DIR (``encoder_weights/``) and loads with ``from_pretrained`` with the tower as pretrained, also
    after DIR is gone."""
    import logging as logging_module

    from ecg_bench.inference import from_pretrained
    from ecg_bench.presets import tiny

    package_log = logging_module.getLogger("ecg_bench")  # the CLI's setup_logging stops propagation: undo it afterwards
    for attr in ("handlers", "propagate", "level"):
        monkeypatch.setattr(package_log, attr, list(package_log.handlers) if attr == "handlers" else getattr(package_log, attr))
    enc_dir = tmp_path / "enc"
    pretrain_clip(_opts(store, towers, enc_dir, steps=2, batch_size=4))
    cfg = tiny(str(tmp_path / "run"))
    cfg.train.max_steps, cfg.data.max_eval_items = 1, 4
    cfg.save(tmp_path / "cfg.json")
    flags = ["--model.representation.type", "image", "--model.representation.width", "64", "--model.representation.height",
             "64", "--model.encoder.type", "clip", "--model.encoder.weights", str(enc_dir), "--model.encoder.freeze", "true",
             "--model.encoder.num_tokens", "2", "--eval.conditions", "real"]  # fmt: skip
    assert cli.main(["run", "--config", str(tmp_path / "cfg.json"), *flags]) == 0
    final = tmp_path / "run" / "checkpoints" / "final"
    assert not (final / "encoder.safetensors").exists()  # frozen: not among the trained modules
    assert sorted(p.name for p in (final / "encoder_weights").iterdir()) == ["encoder.json", "encoder.safetensors"]
    pretrained = load_safetensors(enc_dir / "encoder.safetensors")
    shutil.rmtree(enc_dir)  # the checkpoint stands alone
    model = from_pretrained(final)
    assert model.config.model.encoder.weights == str(final / "encoder_weights")
    assert all(torch.equal(v, pretrained[k]) for k, v in model.elm.encoder.state_dict().items())
