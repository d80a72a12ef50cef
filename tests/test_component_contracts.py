"""The shared contract of each kind, over every registered component (built-in or plug-in): nothing here names a
component, so a new one is checked the moment its file exists."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ecg_bench.config import KINDS, RepresentationOptions, RunConfig, build, choice, field_docs, to_dict
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.evaluation.conditions import CONDITIONS, build_condition
from ecg_bench.models.encoders import ENCODERS, build_encoder, input_kinds
from ecg_bench.models.encoders.base import encoder_spec
from ecg_bench.models.projection import PROJECTORS
from ecg_bench.registry import all_registries
from ecg_bench.representations.base import REPRESENTATIONS, build_representation

COMPONENTS = [(base, name) for base in KINDS for name in sorted(base.get_known_choices())]


@pytest.mark.parametrize("base, name", COMPONENTS, ids=[f"{b.kind}:{n}" for b, n in COMPONENTS])
def test_every_component_has_documented_options_that_round_trip(base, name):
    opts = choice(base, name)
    assert isinstance(opts, base) and opts.type == name and to_dict(opts)["type"] == name
    problems = opts.problems()  # defaults may need a file or another choice: then a message says so
    assert isinstance(problems, list) and all(isinstance(m, str) and m for m in problems), (base.kind, name, problems)
    docs = field_docs(type(opts))
    assert all(docs.get(f.name) for f in dataclasses.fields(opts)), f"{base.kind} {name}: an option has no docstring"
    assert type(opts).__doc__, f"{base.kind} {name}: its options class has no docstring (ecg-bench list --details)"
    assert type(choice(base, name, **{k: v for k, v in to_dict(opts).items() if k != "type"})) is type(opts)


def test_every_kind_is_listed_with_its_registry():
    regs = all_registries()
    for base in KINDS:
        assert regs[base.listing].options_base is base and sorted(base.get_known_choices()) == regs[base.listing].names()


def _tiny_input(name: str) -> tuple[torch.Tensor, dict]:
    kind = input_kinds(name)[0]
    if kind == "signal":
        return torch.randn(2, 12, 500), {}
    for r in REPRESENTATIONS.names():
        try:
            rep = build_representation(choice(RepresentationOptions, r))
        except (ConfigError, DataError):  # needs a file (ecg_byte: a tokenizer)
            continue
        if rep.kind == kind:
            break
    else:
        raise AssertionError(f"encoder {name} reads {kind} inputs, which no representation makes")
    out = rep.output(500)
    return torch.rand(2, *out.shape) * 255, {"input_kind": kind, "input_shape": out.shape}


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_builds_with_defaults_and_returns_tokens(name):
    """[N, *input] -> [N, num_tokens, out_dim]; an encoder whose defaults need files it cannot find (weights, a hub
    model while offline) refuses with a ConfigError / DataError naming them instead."""
    torch.manual_seed(0)
    opts = choice(ENCODERS.options_base, name)
    x, kw = _tiny_input(name)
    try:
        enc = build_encoder(opts, encoder_spec(opts, 12, 500, 250.0, **kw))
    except (ConfigError, DataError) as e:
        assert str(e).strip(), name
        return
    with torch.no_grad():
        y = enc(x)
    assert y.ndim == 3 and y.shape[0] == 2 and torch.isfinite(y).all()
    assert (y.shape[1], y.shape[2]) == (enc.num_tokens, enc.out_dim)


@pytest.mark.parametrize("name", PROJECTORS.names())
def test_every_projector_maps_features_to_the_llm_width(name):
    proj = PROJECTORS.get(name)(choice(PROJECTORS.options_base, name), 32, 48)
    assert proj(torch.randn(2, 3, 32)).shape == (2, 3, 48)


@pytest.mark.parametrize("name", CONDITIONS.names())
def test_every_condition_transforms_a_batch(name, tiny_store, tiny_items):
    """Each test item's signal under the condition: None (no ECG) or float32-compatible [n_ecg, 12, L], the same for
    the same item twice (seeded per item, not by order)."""
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.representations.signal import SignalRepresentation

    ds = ConversationDataset(tiny_items, tiny_store, SignalRepresentation())
    cond = build_condition(name)
    assert isinstance(cond.ablation, bool)
    cond.prepare(ds.items)
    first = [cond.signals(i, ds.signals) for i in range(len(ds))]
    again = [cond.signals(i, ds.signals) for i in reversed(range(len(ds)))][::-1]
    for i, (a, b) in enumerate(zip(first, again)):
        if a is None:
            assert b is None
            continue
        assert a.shape == ds.signals(i).shape and np.isfinite(a).all() and np.array_equal(a, b)


def test_a_plug_in_name_is_an_unknown_choice_until_registered():
    with pytest.raises(ConfigError, match="unknown encoder 'not_a_component'; valid: " + ", ".join(ENCODERS.names())):
        build(RunConfig(), overrides={"model.encoder.type": "not_a_component"})
