"""Builders of the ``st_mem``, ``mtae`` and ``mlae`` encoders (ENCODERS), from options and the run's dimensions.

With ``options.weights`` the checkpoint folder decides the architecture (size, patch size) and its preprocessing
contract must match the run: fs, segment length and lead order of the run's input, and ``options.scaling`` (so
ST-MEM's released weights, trained on z-scored input, need ``scaling zscore``). A mismatch is a DataError naming
both sides.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec
from ecg_bench.models.encoders.contract import PreprocessingContract
from ecg_bench.models.encoders.mae.vit import OPTIONS, SignalViT, ViTEncoderOptions
from ecg_bench.models.encoders.weights import contract_of, load_state, read_encoder
from ecg_bench.signals.leads import LEADS


def run_contract(spec: EncoderSpec, scaling: str) -> PreprocessingContract:
    """What a run feeds an encoder: the ``signal`` representation at ``spec.fs`` in the canonical lead order."""
    return PreprocessingContract(float(spec.fs), int(spec.seq_len), tuple(LEADS[: spec.in_leads]), scaling)


def build_vit(layout: str, opts: ViTEncoderOptions, spec: EncoderSpec) -> SignalViT:
    """A ``layout`` encoder for ``spec``; pretrained from ``opts.weights`` when set (contract checked)."""
    if opts.weights:
        doc, tensors = read_encoder(opts.weights, layout)
        saved = doc["architecture"]["options"]
        contract = contract_of(doc, opts.weights)
        contract.check(run_contract(spec, opts.scaling), opts.weights)
        arch = dataclasses.replace(opts, size=saved["size"], scaling=saved["scaling"],
                                   patch_size=int(doc["architecture"]["patch_size"]))  # fmt: skip
        enc = SignalViT(layout, arch, spec.in_leads, spec.seq_len, opts.num_tokens)
        load_state(enc, tensors, opts.weights)
        enc.weights_folder = opts.weights
    else:
        enc = SignalViT(layout, opts, spec.in_leads, spec.seq_len, opts.num_tokens)
    if opts.freeze:  # the ELM also leaves it untrained (model.encoder.freeze)
        enc.requires_grad_(False)
    return enc


def _register(layout: str) -> None:
    def builder(opts: ViTEncoderOptions, spec: EncoderSpec) -> nn.Module:
        return build_vit(layout, opts, spec)

    builder.__doc__ = OPTIONS[layout].__doc__
    ENCODERS.register(layout, options=OPTIONS[layout])(builder)


for _layout in OPTIONS:
    _register(_layout)
