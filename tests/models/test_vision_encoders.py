"""HF vision encoders (tiny random models saved to a folder, nothing downloaded) and the random encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from elm_fixtures import save_tiny_vision_model

from ecg_bench.config import EncoderOptions, choice
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.models.encoders import ENCODERS, EncoderSpec, build_encoder, input_kinds
from ecg_bench.models.encoders.random_init import RandomEncoderOptions
from ecg_bench.models.encoders.vision import VisionEncoderOptions

FAMILIES = ["vit", "clip", "siglip", "siglip2"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    return {f: save_tiny_vision_model(f, root / f) for f in FAMILIES}


def _spec(shape=(3, 12, 500), num_tokens=4, kind="image"):
    return EncoderSpec(in_leads=12, seq_len=500, out_dim=24, num_tokens=num_tokens, input_kind=kind, input_shape=shape)


@pytest.mark.parametrize("family", FAMILIES)
def test_normalization_is_the_models_own_image_processor(family, folders):
    """At the model's own size (no resize), the encoder's pixels equal what the saved image processor makes."""
    from transformers import AutoImageProcessor

    enc = build_encoder(choice(EncoderOptions, family, model=str(folders[family])), _spec((3, 32, 32)))
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    proc = AutoImageProcessor.from_pretrained(folders[family])
    want = torch.as_tensor(np.asarray(proc(images=img, return_tensors="np")["pixel_values"]))
    got = enc.pixel_values(torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None])
    if family == "siglip2":
        got = enc.patch_sequence(got)
    assert got.shape == want.shape
    assert torch.allclose(got, want.float(), atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tokens", ["patches", "pooled", "all"])
def test_output_tokens_for_image_and_stacked_inputs(family, tokens, folders):
    for shape in ((3, 64, 48), (3, 12, 500)):  # an image representation and a stacked one, resized to 32 px
        enc = build_encoder(choice(EncoderOptions, family, model=str(folders[family]), tokens=tokens), _spec(shape, num_tokens=3))
        x = torch.rand(2, *shape) * 255
        out = enc(x)
        n_patches = 16
        want = {"patches": 3, "pooled": 1, "all": n_patches + (family in ("vit", "clip"))}[tokens]
        assert out.shape == (2, want, 16) and enc.num_tokens == want and enc.out_dim == 16
        assert torch.isfinite(out).all()
        assert not torch.allclose(out[0], out[1])  # different pictures, different tokens


def test_vision_encoders_read_images_only_and_signal_encoders_refuse_images(folders):
    assert all(input_kinds(f) == ("image",) for f in FAMILIES)
    with pytest.raises(ConfigError, match="encoder 'clip' reads image representations, not 'signal'"):
        build_encoder(choice(EncoderOptions, "clip", model=str(folders["clip"])), _spec((12, 500), kind="signal"))
    with pytest.raises(ConfigError, match="encoder 'conv1d' reads signal .*encoders that read image: .*clip.*random"):
        build_encoder(choice(EncoderOptions, "conv1d"), _spec())
    with pytest.raises(ConfigError, match="tokens must be one of patches, pooled, all"):
        VisionEncoderOptions(tokens="cls").check()
    with pytest.raises(DataError, match="cannot load the image processor"):
        build_encoder(choice(EncoderOptions, "vit", model=str(folders["vit"]) + "-missing"), _spec())


@pytest.mark.parametrize("shape,kind", [((12, 500), "signal"), ((3, 64, 64), "image"), ((3, 12, 500), "image")])
def test_random_encoder_is_frozen_seeded_and_reads_any_representation(shape, kind):
    enc = build_encoder(choice(EncoderOptions, "random", width=16, depth=3, seed=7), _spec(shape, num_tokens=5, kind=kind))
    assert list(enc.parameters()) == []  # buffers only: nothing can train it
    x = torch.randn(3, *shape)
    out = enc(x)
    assert out.shape == (3, 5, 24) and torch.isfinite(out).all()
    same = build_encoder(choice(EncoderOptions, "random", width=16, depth=3, seed=7), _spec(shape, num_tokens=5, kind=kind))
    other = build_encoder(choice(EncoderOptions, "random", width=16, depth=3, seed=8), _spec(shape, num_tokens=5, kind=kind))
    assert torch.equal(same(x), out) and not torch.allclose(other(x), out)
    assert torch.equal(enc(torch.zeros(1, *shape)), enc(torch.zeros(1, *shape)))
    assert set(input_kinds("random")) == {"signal", "image"} and "random" in ENCODERS
    with pytest.raises(ConfigError, match="depth must be an integer in \\[1, 12\\], got 0"):
        RandomEncoderOptions(depth=0).check()
