"""Pictures through the whole pipeline: ``run`` and ``evaluate`` with the image and stacked representations,
encoder/representation mismatches refused before any work, and ``ecg-bench render``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from ecg_bench import cli
from ecg_bench.presets import tiny


@pytest.fixture(autouse=True)
def _quiet_cli(monkeypatch):
    package_log = logging.getLogger("ecg_bench")  # the CLI's setup_logging stops propagation: undo it afterwards
    for attr in ("handlers", "propagate", "level"):
        monkeypatch.setattr(package_log, attr, list(package_log.handlers) if attr == "handlers" else getattr(package_log, attr))


@pytest.mark.slow
@pytest.mark.parametrize("representation", ["image", "stacked"])
def test_run_and_evaluate_a_picture_representation_with_the_random_encoder(representation, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny(str(out))
    cfg.model.representation, cfg.model.encoder = representation, "random"
    cfg.train.max_steps, cfg.data.max_eval_items = 1, 4
    cfg.save(tmp_path / "cfg.json")
    assert cli.main(["run", "--config", str(tmp_path / "cfg.json"), "--eval.ablations", "real", "zeros"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["conditions"]) == {"real", "zeros"} and res["training"]
    # the frozen random encoder holds no trained weights; the checkpoint rebuilds it from its seed
    ck = out / "checkpoints" / "final"
    assert not (ck / "encoder.safetensors").exists() and (ck / "projector.safetensors").exists()
    assert cli.main(["evaluate", "--checkpoint", str(ck), "--eval.ablations", "real", "zeros"]) == 0
    again = json.loads(next(ck.glob("eval-*/results.json")).read_text())
    assert [s["prediction"] for s in again["samples"]] == [s["prediction"] for s in res["samples"]]


@pytest.mark.parametrize("flags, message", [
    (["--model.representation", "image"], "encoder 'conv1d' reads signal representations, not 'image' ones"),
    (["--model.representation", "stacked", "--model.elm", "encoder_free"], "encoder 'patch' reads signal"),
    (["--model.representation", "image", "--model.encoder", "clip", "--model.elm", "ecg_byte", "--model.tokenizer", "t.json"],
     "ELM family 'ecg_byte' reads signal representations, not 'image' ones"),
    (["--model.representation", "signal", "--model.encoder", "vit"], "encoder 'vit' reads image representations"),
])  # fmt: skip
def test_an_encoder_that_cannot_read_the_representation_is_refused_before_any_work(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "--output_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and not out.exists()


def test_render_writes_one_printout_and_never_overwrites(tiny_store, tmp_path, capsys):
    png = tmp_path / "pics" / "ecg.png"
    args = ["render", "--store", str(tiny_store.path), "--index", "3", "--out", str(png)]
    assert cli.main([*args, "--layout", "6x2", "--width", "300", "--height", "200"]) == 0
    img = np.asarray(Image.open(png))
    assert img.shape == (200, 300, 3) and "wrote" in capsys.readouterr().out
    from ecg_bench.representations.image import ImageOptions, ImageRepresentation

    want = ImageRepresentation(ImageOptions(layout="6x2", width=300, height=200), fs=tiny_store.fs).draw(tiny_store.signal(3))
    assert np.array_equal(img, np.asarray(want))  # the store's segment 3, as the representation draws it
    before = png.read_bytes()
    assert cli.main(args) == 2 and "already exists" in capsys.readouterr().err and png.read_bytes() == before
    assert cli.main(["render", "--store", str(tiny_store.path), "--index", "999", "--out", str(tmp_path / "b.png")]) == 2
    assert "out of range: the store" in capsys.readouterr().err
    assert cli.main(["render", "--store", str(tmp_path), "--index", "0", "--out", str(tmp_path / "c.png")]) == 2
    assert "not a segment store" in capsys.readouterr().err
    assert cli.main([*args[:-1], str(tmp_path / "d.png"), "--layout", "2x6"]) == 2
    assert "layout must be one of 3x4, 6x2, 12x1, got '2x6'" in capsys.readouterr().err
    assert not any(tmp_path.glob("[bcd].png"))
