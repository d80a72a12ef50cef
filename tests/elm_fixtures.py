"""Helpers shared by tests (imported by name; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from config_helpers import model_config


def make_tiny_elm(**model_overrides):
    """A fresh tiny ELM (2-layer random Llama, SmolLM2 tokenizer) for 500-sample segments at 250 Hz."""
    import torch

    from ecg_bench.models.elm import build_elm

    torch.manual_seed(0)
    cfg = model_config(**{"llm": "tiny", "num_tokens": 2, "dim": 32, **model_overrides})
    return build_elm(cfg, seq_len=500, fs=250.0)


def save_tiny_vision_model(family: str, folder, init: float = 0.02) -> str:
    """A tiny random ``family`` (vit, clip, siglip, siglip2) vision model + its image processor saved to ``folder``
    (32 x 32 px, 8 px patches, width 16), as a hub checkpoint would be laid out; CLIP as a whole CLIPModel, whose
    vision tower the encoder loads. Nothing is downloaded. ``init``: std of ViT's random weights, and CLIP's scaled
    alike (``initializer_factor``); SigLIP's initialisation has no such setting and ignores it. The families' 0.02 makes a
    1-layer ViT's or CLIP's pooled output nearly the same for every picture: nothing for a contrastive test to learn."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    vc = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
              initializer_range=init, initializer_factor=init / 0.02)  # fmt: skip
    folder = str(folder)
    if family == "clip":
        tc = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=99,
                  bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
        tf.CLIPModel(tf.CLIPConfig(vision_config=vc, text_config=tc, projection_dim=8)).save_pretrained(folder)
        tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    elif family == "vit":
        tf.ViTModel(tf.ViTConfig(**vc), add_pooling_layer=False).save_pretrained(folder)
        tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    elif family == "siglip":
        tf.SiglipVisionModel(tf.SiglipVisionConfig(**vc)).save_pretrained(folder)
        tf.SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    elif family == "siglip2":
        vc2 = {k: v for k, v in vc.items() if k != "image_size"}
        tf.Siglip2VisionModel(tf.Siglip2VisionConfig(num_patches=16, **vc2)).save_pretrained(folder)
        tf.Siglip2ImageProcessor(patch_size=8, max_num_patches=16).save_pretrained(folder)
    else:
        raise ValueError(f"unknown vision family {family!r}")
    return folder


def make_tiny_bert(folder, texts, init: float = 0.02, dropout: float = 0.1):
    """A random 2-layer BERT (hidden 32) with a word-level vocabulary of ``texts``, saved to ``folder`` (``init``: std
    of the random weights; ``dropout``: BERT's hidden and attention dropout)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for t in texts for w in t.lower().replace(".", " . ").replace(",", " , ").split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # read back from the folder: transformers 5's BertTokenizerFast(vocab_file=...) ignores the file (5 tokens, all UNK)
    tok = BertTokenizerFast.from_pretrained(folder)
    assert len(tok) == len(vocab), (len(tok), len(vocab))
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64, initializer_range=init, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout)  # fmt: skip
    BertModel(cfg).save_pretrained(folder)
    return folder


def write_config_only_checkpoint(folder, config: dict):
    """A checkpoint folder that holds ``config`` (a run config as a dict, bad values allowed) with the files every
    checkpoint carries around it (preprocessing contract, elm.json, a LoRA adapter stand-in) and its manifest, for
    tests of how a checkpoint's config is read; it has no trained weights."""
    import json
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    from ecg_bench.config import RunConfig
    from ecg_bench.data.contract import PreprocessingContract
    from ecg_bench.training.manifest import write_manifest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    PreprocessingContract.from_run_config(RunConfig()).write(folder)
    (folder / "elm.json").write_text(json.dumps({"family": "llava", "input": None}))
    (folder / "adapter").mkdir(exist_ok=True)
    save_file({"stand_in": torch.zeros(1)}, str(folder / "adapter" / "adapter_model.safetensors"))
    write_manifest(folder)
    return folder
