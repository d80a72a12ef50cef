"""``ecg-bench tokenizer train | verify | encode | import`` through ecg_bench.cli.main."""

from __future__ import annotations

import json

from ecg_bench import cli
from ecg_bench.ecg_byte import ECGByteTokenizer, NormParams


def test_train_verify_encode(byte_store, tmp_path, capsys):
    tok_path = tmp_path / "tok.json"
    args = ["tokenizer", "train", "--store", str(byte_store.path), "--vocab_size", "120", "--num_samples", "12", "--seed", "4"]
    assert cli.main([*args, "--out", str(tok_path)]) == 0
    assert "120 ids from 12 segments" in capsys.readouterr().out
    tok = ECGByteTokenizer.load(tok_path)
    assert tok.vocab_size == 120 and tok.meta["seed"] == 4

    assert cli.main(["tokenizer", "verify", "--tokenizer", str(tok_path), "--store", str(byte_store.path)]) == 0
    out = capsys.readouterr().out
    n = len(byte_store)
    assert f"{n}/{n}" in out and "verify: OK" in out and "symbols/token" in out

    assert (
        cli.main(["tokenizer", "encode", "--tokenizer", str(tok_path), "--store", str(byte_store.path), "--segments", "3", "0"])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["3", "0"]
    assert [int(x) for x in lines[0].split("\t")[1].split()] == tok.encode_signal(byte_store.signal(3))

    ids_file = tmp_path / "ids.jsonl"
    assert (
        cli.main(["tokenizer", "encode", "--tokenizer", str(tok_path), "--store", str(byte_store.path), "--out", str(ids_file)])
        == 0
    )
    rows = [json.loads(line) for line in ids_file.read_text().splitlines()]
    assert [r["segment_id"] for r in rows] == list(range(n))
    rec = tok.reconstruct(rows[5]["ids"], NormParams.from_dict(rows[5]["norm"]))
    assert abs(rec - byte_store.signal(5)).max() <= tok.quantization_step(NormParams.from_dict(rows[5]["norm"])).max()


def test_import_then_verify(legacy_pickle, byte_store, tmp_path, capsys):
    out = tmp_path / "legacy.json"
    assert cli.main(["tokenizer", "import", "--pickle", str(legacy_pickle), "--out", str(out)]) == 0
    assert "1026 ids imported" in capsys.readouterr().out
    assert cli.main(["tokenizer", "verify", "--tokenizer", str(out), "--store", str(byte_store.path), "--num_samples", "5"]) == 0
    assert "5/5" in capsys.readouterr().out


def test_missing_options_and_bad_files_exit_2_naming_them(byte_store, tmp_path, capsys):
    assert cli.main(["tokenizer", "train", "--store", str(byte_store.path)]) == 2
    assert "--out" in capsys.readouterr().err
    assert cli.main(["tokenizer", "verify", "--tokenizer", str(tmp_path / "none.json"), "--store", str(byte_store.path)]) == 2
    assert "none.json" in capsys.readouterr().err
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # protocol-0 GLOBAL os.system + REDUCE
    assert cli.main(["tokenizer", "import", "--pickle", str(evil), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "evil.pkl" in err and "os.system" in err and not (tmp_path / "x.json").exists()
    bad_vocab = ["tokenizer", "train", "--store", str(byte_store.path), "--vocab_size", "5", "--out", str(tmp_path / "t.json")]
    assert cli.main(bad_vocab) == 2
    assert "vocab_size" in capsys.readouterr().err


def test_train_with_lead_scope_and_clipping_is_saved_and_used(byte_store, tmp_path, capsys):
    out = tmp_path / "lead.json"
    args = ["tokenizer", "train", "--store", str(byte_store.path), "--vocab_size", "60", "--num_samples", "5"]
    assert cli.main([*args, "--scope", "lead", "--clip_percentiles", "1", "99", "--out", str(out)]) == 0
    tok = ECGByteTokenizer.load(out)
    assert tok.symbols.scope == "lead" and tok.symbols.clip_percentiles == (1.0, 99.0)
    _, params = tok.encode_signals(byte_store.signals([0, 1]))
    assert params.mins.shape == (2, 12)
    capsys.readouterr()
    assert cli.main(["tokenizer", "verify", "--tokenizer", str(out), "--store", str(byte_store.path), "--num_samples", "3"]) == 0
    assert "3/3" in capsys.readouterr().out
