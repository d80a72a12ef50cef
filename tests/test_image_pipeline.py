"""Pictures through the whole pipeline: ``run`` and ``evaluate`` with the image and stacked representations,
encoder/representation mismatches refused before any work, and ``ecg-bench render``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from ecg_bench import cli
from ecg_bench.config import EncoderOptions, RepresentationOptions, choice
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
    cfg.model.representation = choice(RepresentationOptions, representation)
    cfg.model.encoder = choice(EncoderOptions, "random", dim=32, num_tokens=2, width=16, depth=2)
    cfg.train.max_steps, cfg.data.max_eval_items = 1, 4
    cfg.save(tmp_path / "cfg.json")
    assert cli.main(["run", "--config", str(tmp_path / "cfg.json"), "--eval.conditions", "real", "zeros"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["conditions"]) == {"real", "zeros"} and res["training"]
    # the frozen random encoder holds no trained weights; the checkpoint rebuilds it from its seed
    ck = out / "checkpoints" / "final"
    assert not (ck / "encoder.safetensors").exists() and (ck / "projector.safetensors").exists()
    assert cli.main(["evaluate", "--checkpoint", str(ck), "--eval.conditions", "real", "zeros"]) == 0
    again = json.loads(next(ck.glob("eval-*/results.json")).read_text())
    assert [s["prediction"] for s in again["samples"]] == [s["prediction"] for s in res["samples"]]


@pytest.mark.parametrize("flags, message", [
    (["--model.representation.type", "image"], "encoder 'conv1d' reads signal representations, not 'image' ones"),
    (["--model.representation.type", "stacked", "--model.elm.type", "encoder_free"], "encoder 'patch' reads signal"),
    (["--model.representation.type", "image", "--model.encoder.type", "clip", "--model.elm.type", "ecg_byte",
      "--model.elm.tokenizer", "t.json"], "ELM family 'ecg_byte' reads signal representations, not 'image' ones"),
    (["--model.representation.type", "signal", "--model.encoder.type", "vit"], "encoder 'vit' reads image representations"),
])  # fmt: skip
def test_an_encoder_that_cannot_read_the_representation_is_refused_before_any_work(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "--output_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and not out.exists()


@pytest.mark.slow
def test_image_6x2_with_a_tiny_clip_from_flags_and_yaml(tmp_path):
    """``--model.representation.type image --model.representation.layout 6x2 --model.encoder.type clip
    --model.encoder.model DIR`` reaches the components: the run trains and evaluates a tiny CLIP saved to DIR on
    6x2 printouts, and its saved config holds the options (a YAML config gives the same)."""
    from elm_fixtures import save_tiny_vision_model

    from ecg_bench.config import build

    clip = save_tiny_vision_model("clip", tmp_path / "clip")
    flags = ["--model.representation.type", "image", "--model.representation.layout", "6x2",
             "--model.representation.width", "64", "--model.representation.height", "48",
             "--model.encoder.type", "clip", "--model.encoder.model", clip, "--model.encoder.num_tokens", "3"]  # fmt: skip
    out = tmp_path / "run"
    cfg = tiny(str(out))
    cfg.train.max_steps, cfg.data.max_eval_items = 1, 4
    cfg.save(tmp_path / "cfg.json")
    assert cli.main(["run", "--config", str(tmp_path / "cfg.json"), "--eval.conditions", "real", "zeros", *flags]) == 0
    res = json.loads((out / "results.json").read_text())
    model = res["config"]["model"]
    assert model["representation"] == {"type": "image", "layout": "6x2", "width": 64, "height": 48, "row_mm": 25.0,
                                       "whole_segment_per_lead": False, "line_width": 0, "min_grid_px": 2.0,
                                       "augment": False, "seed": 0}  # fmt: skip
    assert model["encoder"]["type"] == "clip" and model["encoder"]["model"] == clip and model["encoder"]["num_tokens"] == 3
    assert set(res["conditions"]) == {"real", "zeros"} and res["training"]
    assert (out / "checkpoints" / "final" / "encoder.safetensors").exists()  # not frozen: the CLIP tower trained

    yaml_file = tmp_path / "image.yaml"
    yaml_file.write_text(f"model:\n  representation: {{type: image, layout: 6x2}}\n  encoder: {{type: clip, model: {clip}, freeze: true}}\n")
    from_yaml = build(tiny(str(tmp_path / "y")), str(yaml_file), {})
    assert from_yaml.model.representation.type == "image" and from_yaml.model.representation.layout == "6x2"
    assert from_yaml.model.encoder.type == "clip" and from_yaml.model.encoder.model == clip and from_yaml.model.encoder.freeze


def test_image_and_vision_options_are_listed_and_checked(capsys):
    assert cli.main(["list", "--details", "representations"]) == 0
    listed = capsys.readouterr().out
    assert "image" in listed and "layout" in listed and "stacked" in listed and "eps" in listed
    assert cli.main(["list", "--details", "encoders"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("clip", "vit", "siglip2", "random", "tokens", "depth"))
    assert cli.main(["run", "--model.representation.type", "image", "--model.representation.layout", "2x6",
                     "--model.encoder.type", "random", "--model.encoder.depth", "0", "--output_dir", "unused"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "layout must be one of 3x4, 6x2, 12x1, got '2x6'" in err and "depth must be an integer in [1, 12], got 0" in err


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
