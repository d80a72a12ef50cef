"""``from_pretrained`` needs nothing but the checkpoint folder (the store it was trained from may be gone); a
checkpoint whose files disagree is refused by name; the model card and ``push_to_hub`` (hub API mocked: never network)."""

from __future__ import annotations

import json
import shutil

import pytest

from ecg_bench import folders
from ecg_bench.errors import DataError, ECGBenchError
from ecg_bench.inference import from_pretrained, push_to_hub, resolve_checkpoint
from ecg_bench.training.manifest import write_manifest

PTBXL = "ptbxl/records500/06000/06000_hr"
Q = "Is there tachycardia?"

pytestmark = pytest.mark.slow  # shares the session's tiny checkpoint (trained once, ~30 s on 2 cores)


def test_the_package_exports_the_load_path():
    import ecg_bench
    from ecg_bench import inference

    assert ecg_bench.from_pretrained is inference.from_pretrained and ecg_bench.load_elm is inference.from_pretrained
    assert ecg_bench.push_to_hub is inference.push_to_hub


def test_a_checkpoint_carries_its_dimensions_contract_and_card(tiny_checkpoint):
    run, ck = tiny_checkpoint
    contract = json.loads((ck / "preprocessing.json").read_text())
    assert contract["fs"] == 250.0 and contract["segment_len"] == 500 and contract["segment_seconds"] == 2.0
    assert contract["leads"][:3] == ["I", "II", "III"] and contract["units"] == "mV" and contract["filters"] == []
    assert contract["representation"] == "signal" and contract["representation_options"] == {"clip": 5.0}
    manifest = json.loads((ck / "elm.json").read_text())
    assert manifest["family"] == "llava" and manifest["options"] == {"type": "llava"}
    assert manifest["input"] == {"seq_len": 500, "in_leads": 12, "fs": 250.0}
    assert manifest["vocab"]["placeholder"] == "<ecg>" and manifest["vocab"]["size"] == 49153
    card = (ck / "README.md").read_text()
    assert "| base LLM | ecg-bench 'tiny'" in card and "| ELM family | `llava`: LLaVA-style" in card
    assert "| encoder | `conv1d` (freeze=false, dim=32, num_tokens=2" in card and ", trained |" in card  # type and options
    assert "| projector | `mlp`" in card and "| representation | `signal` (clip=5.0) |" in card
    assert "| ECG source | `synthetic` (" in card and "- representation: `signal` (clip=5.0)" in card
    assert "| test fold | 0 of 3 patient-disjoint folds (data seed 0)" in card and "- resampled to 250 Hz" in card
    assert "site-packages" not in card and "No evaluation attached yet" in card


def test_a_lora_checkpoint_has_no_empty_peft_card_and_names_its_base_llm(tmp_path):
    from elm_fixtures import make_tiny_elm

    from ecg_bench.config import EncoderOptions, RunConfig, choice
    from ecg_bench.training.checkpoint import save_checkpoint

    elm, _ = make_tiny_elm()
    cfg = RunConfig()
    cfg.model.llm, cfg.model.encoder = "tiny", choice(EncoderOptions, "conv1d", dim=32, num_tokens=2)
    ck = save_checkpoint(tmp_path / "ck", elm, cfg)
    assert (ck / "adapter" / "adapter_model.safetensors").is_file() and not (ck / "adapter" / "README.md").exists()
    assert json.loads((ck / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"
    assert "LoRA r=16, alpha=32 on q_proj, v_proj" in (ck / "README.md").read_text()


def test_the_card_names_a_hub_base_model_by_its_id():
    from ecg_bench.config import RunConfig
    from ecg_bench.data.contract import PreprocessingContract
    from ecg_bench.training.model_card import render_card

    cfg = RunConfig()
    cfg.model.llm = "smollm2-135m"
    card = render_card(cfg, PreprocessingContract.from_run_config(cfg), location="me/ecg-model")
    assert card.startswith("---\nlibrary_name: ecg-bench\n") and "\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in card
    assert "from_pretrained('me/ecg-model')" in card and "ecg-bench chat --checkpoint me/ecg-model" in card


def test_push_to_hub_uploads_a_filled_card_and_the_files_a_model_needs(tiny_checkpoint):
    run, ck = tiny_checkpoint
    results = json.loads((run / "results.json").read_text())

    class FakeApi:  # records what would be uploaded; the staging folder is gone after the call
        def create_repo(self, repo_id, private, exist_ok, repo_type):
            self.repo = (repo_id, private, exist_ok, repo_type)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            from pathlib import Path

            root = Path(folder_path)
            self.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            self.card = (root / "README.md").read_text()

    api = FakeApi()
    assert push_to_hub(ck, "me/tiny-ecg", api=api) == "https://huggingface.co/me/tiny-ecg"
    assert api.repo == ("me/tiny-ecg", True, True, "model")
    assert {"config.json", "elm.json", "preprocessing.json", "README.md", "projector.safetensors", "encoder.safetensors",
            "llm/model.safetensors", "training_data.json"} <= set(api.files)  # fmt: skip
    assert not {"optimizer.safetensors", "rng_state.json", "rng_state.safetensors", ".ecg-bench.json"} & set(api.files)
    real = results["conditions"]["real"]
    acc, (low, high) = real["metrics"]["acc_normalized"], real["ci95"]["acc_normalized"]
    n = f"{real['num_samples']} ({real['clusters']})"
    row = f"| real | acc_normalized | {100 * acc:.1f} | {100 * low:.1f}-{100 * high:.1f} | {n} |"
    assert row in api.card and "On fold 0 of 3" in api.card and "No evaluation attached" not in api.card
    assert "from_pretrained('me/tiny-ecg')" in api.card and str(ck) not in api.card
    with pytest.raises(DataError, match="expected a hub id of the form owner/name"):
        push_to_hub(ck, "not a repo", api=api)


def test_a_hub_id_is_downloaded_and_a_failed_download_says_so(tiny_checkpoint, monkeypatch):
    import huggingface_hub

    calls = []
    def download(repo_id, revision=None):
        calls.append(repo_id)
        return str(tiny_checkpoint[1])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    assert resolve_checkpoint("me/tiny-ecg") == tiny_checkpoint[1] and calls == ["me/tiny-ecg"]

    def offline(repo_id, revision=None):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ECGBenchError, match="could not fetch checkpoint 'me/tiny-ecg' from the Hugging Face Hub .*offline"):
        resolve_checkpoint("me/tiny-ecg")
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        resolve_checkpoint("./no/such/folder")


def test_a_checkpoint_whose_files_disagree_is_refused(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint[1], bad, ignore=shutil.ignore_patterns("eval-*"))
    manifest = json.loads((bad / "elm.json").read_text())
    manifest["vocab"]["placeholder_id"] = 7
    (bad / "elm.json").write_text(json.dumps(manifest))
    write_manifest(bad)  # files that agree with the checkpoint's manifest, but not with each other
    with pytest.raises(DataError, match="trained with vocabulary .* the added tokens would get other ids"):
        from_pretrained(bad, device="cpu")
    (bad / "preprocessing.json").write_text(json.dumps({"fs": 250.0, "segment_len": 600}))
    write_manifest(bad)
    with pytest.raises(DataError, match=r"disagree: preprocessing.json says segment_len 600, config.json gives 500"):
        from_pretrained(bad, device="cpu")
    (bad / "preprocessing.json").write_text(json.dumps({"fs": -1, "segment_len": 500, "units": "uV"}))
    write_manifest(bad)
    with pytest.raises(DataError, match=r"preprocessing.json: invalid preprocessing contract: fs must be a positive .* units"):
        from_pretrained(bad, device="cpu")


def test_a_file_the_config_names_but_the_checkpoint_lacks_is_refused_by_name(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint[1], bad, ignore=shutil.ignore_patterns("eval-*"))
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["elm"] = {"type": "ecg_byte", "tokenizer": str(tmp_path / "elsewhere" / "tok.json")}
    (bad / "config.json").write_text(json.dumps(cfg))
    write_manifest(bad)
    with pytest.raises(DataError, match=r"carries no ecg_byte_tokenizer.json, and the file its config.json names as "
                                        r"model.elm.tokenizer \(.*tok.json\) does not exist here"):  # fmt: skip
        from_pretrained(bad, device="cpu")


def test_the_contract_names_the_representation_by_type_and_options():
    from ecg_bench.config import RepresentationOptions, RunConfig, choice
    from ecg_bench.data.contract import PreprocessingContract

    cfg = RunConfig()
    cfg.model.representation = choice(RepresentationOptions, "signal", clip=3.0)
    c = PreprocessingContract.from_run_config(cfg)
    d = c.to_dict()
    assert (d["representation"], d["representation_options"]) == ("signal", {"clip": 3.0})
    assert PreprocessingContract.from_dict(d).representation_config() == cfg.model.representation
    old = {k: v for k, v in d.items() if k != "representation_options"}  # a pre-port preprocessing.json
    assert PreprocessingContract.from_dict(old).representation_config() == choice(RepresentationOptions, "signal")
    whole = {**old, "representation": {"type": "signal_zscore", "eps": 0.01}}
    assert PreprocessingContract.from_dict(whole).representation_config() == choice(RepresentationOptions, "signal_zscore",
                                                                                     eps=0.01)  # fmt: skip
    with pytest.raises(DataError, match=r"representation 'signal' options \{'eps': 1\} do not fit it"):
        PreprocessingContract.from_dict({**d, "representation_options": {"eps": 1}}).representation_config()


def test_from_pretrained_after_its_store_is_deleted(tiny_checkpoint, shared_data):
    """Last in this module: deletes the session checkpoint's store (nothing else reads it afterwards)."""
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.jsonl import load_jsonl

    run, ck = tiny_checkpoint
    store = SegmentStore(run / "store")
    items = load_jsonl(run / "synthetic_qa.jsonl")[:4]
    inputs = [(it["messages"][:1], store.signals(it["segment_ids"])[0]) for it in items]
    del store

    def answers(model):
        return [model.reply(msgs, seg) for msgs, seg in inputs] + [model.ask(shared_data / PTBXL, Q, segment=s) for s in (0, 4)]

    before = answers(from_pretrained(ck, device="cpu"))
    assert all(a.strip() for a in before)
    folders.remove(run / "store", "store")
    assert not (run / "store").exists()
    assert json.loads((ck / "config.json").read_text())["output_dir"] == str(run)  # the config still names the run
    assert answers(from_pretrained(ck, device="cpu")) == before

