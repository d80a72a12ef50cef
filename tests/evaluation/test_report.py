"""``ecg-bench report``: grouping, statistics on known answers (results.json files written here), and the whole
command on real tiny runs, its tables and the HTML opened in headless Chromium."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ecg_bench import cli
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.evaluation.comparisons import holm
from ecg_bench.evaluation.report import ReportOptions, load_runs, write_report
from ecg_bench.evaluation.report.analysis import (
    DOES_NOT_USE,
    USES,
    audit_records,
    comparison_records,
    summary_records,
)
from ecg_bench.evaluation.report.runs import group_runs
from ecg_bench.folders import FolderError

# ---------------------------------------------------------------- results.json written from known scores


def _results(encoder: str, fold: int, seed: int, scores: dict[str, list[float]], lr: float = 1e-3) -> dict:
    """A results.json with 10 items of 5 patients (2 each), items 0-4 'verify', 5-9 'choose'; ``scores`` per
    condition: one 0/1 acc_normalized per item. Item ids depend on the fold (each fold its own test items)."""
    samples, conditions = [], {}
    for cond, xs in scores.items():
        for i, x in enumerate(xs):
            samples.append({"condition": cond, "id": f"f{fold}-item{i}", "turn": 0, "question": "q?", "reference": "yes",
                            "prediction": "yes" if x else "no", "patient_id": f"f{fold}-p{i // 2}",
                            "question_type": "verify" if i < 5 else "choose", "segment_ids": [i], "acc_normalized": x})  # fmt: skip
        types = {t: {"metrics": {"acc_normalized": float(np.mean(xs[sl]))}, "ci95": {"acc_normalized": [0.0, 1.0]}}
                 for t, sl in (("verify", slice(0, 5)), ("choose", slice(5, 10)))}  # fmt: skip
        conditions[cond] = {"metrics": {"acc_normalized": float(np.mean(xs)), "bleu": 0.1},
                            "ci95": {"acc_normalized": [0.0, 1.0], "bleu": [0.0, 0.2]}, "per_type": types}  # fmt: skip
    config = {"data": {"fold": fold, "workers": 0}, "model": {"encoder": encoder, "elm": "llava"},
              "train": {"seed": seed, "lr": lr}, "output_dir": f"runs/{encoder}-{fold}-{seed}"}  # fmt: skip
    return {"format_version": 1, "config": config, "training": {"steps": 4}, "conditions": conditions, "samples": samples}


def _write(root: Path, name: str, results: dict) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps(results))
    return root / name


ONES, ZEROS = [1.0] * 10, [0.0] * 10
HALF = [1.0, 0.0] * 5


@pytest.fixture
def known(tmp_path):
    """conv1d: 4 runs (2 folds x 2 seeds), real right on 8-10 of 10 items, zeros on none: uses the ECG.
    spectral: 2 runs (fold 0, seeds 0 and 1), real = zeros = HALF: does not use the ECG."""
    real = {(0, 0): ONES, (0, 1): [1.0] * 8 + [0.0] * 2, (1, 0): [1.0] * 9 + [0.0], (1, 1): ONES}
    for (fold, seed), xs in real.items():
        _write(tmp_path, f"conv-f{fold}-s{seed}", _results("conv1d", fold, seed, {"real": xs, "zeros": ZEROS}))
    for seed in (0, 1):
        _write(tmp_path, f"spec-f0-s{seed}", _results("spectral", 0, seed, {"real": HALF, "zeros": HALF}))
    return tmp_path, real


def test_runs_are_grouped_by_everything_but_fold_and_seed_and_named_by_what_differs(known):
    root, _ = known
    configs = group_runs(load_runs([root]))
    assert [c.name for c in configs] == ["encoder=conv1d", "encoder=spectral"]
    assert [len(c.runs) for c in configs] == [4, 2]
    assert configs[0].settings == {"model.encoder": "conv1d"}
    _write(root, "other-lr", _results("conv1d", 0, 0, {"real": ONES}, lr=5e-4))  # a third configuration
    names = [c.name for c in group_runs(load_runs([root]))]
    assert names == ["encoder=conv1d, lr=0.001", "encoder=conv1d, lr=0.0005", "encoder=spectral, lr=0.001"]  # by path
    # a field told to be ignored no longer splits
    assert len(group_runs(load_runs([root]), ignore=["train.lr"])) == 2


def test_summary_is_mean_sd_and_t_interval_over_runs(known):
    root, real = known
    configs = group_runs(load_runs([root]))
    rows = {(r["configuration"], r["condition"], r["group"], r["metric"]): r for r in summary_records(configs)}
    x = np.array([np.mean(v) for v in real.values()])
    row = rows[("encoder=conv1d", "real", "all", "acc_normalized")]
    lo, hi = stats.t.interval(0.95, df=3, loc=x.mean(), scale=stats.sem(x))
    assert (row["runs"], row["mean"], row["sd"]) == (4, pytest.approx(x.mean()), pytest.approx(x.std(ddof=1)))
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    verify = np.array([np.mean(v[:5]) for v in real.values()])
    assert rows[("encoder=conv1d", "real", "verify", "acc_normalized")]["mean"] == pytest.approx(verify.mean())
    assert rows[("encoder=spectral", "zeros", "all", "bleu")]["sd"] == 0.0


def test_paired_comparison_pairs_same_fold_items_by_seed_with_mcnemar_and_holm(known):
    root, real = known
    configs = group_runs(load_runs([root]))
    (row,) = comparison_records(configs, ["real"], ["acc_normalized"], n_resamples=500)
    # only fold 0 is shared: conv1d seed s pairs with spectral seed s, item by item
    a = np.concatenate([real[(0, 0)], real[(0, 1)]])
    b = np.array(HALF * 2)
    assert (row["a"], row["b"], row["folds"], row["pairs"], row["patients"]) == ("encoder=conv1d", "encoder=spectral", 1, 20, 5)
    assert row["diff"] == pytest.approx((a - b).mean())
    assert (row["a_only"], row["b_only"]) == (int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum()))
    assert row["test"] == "McNemar exact"
    assert row["p"] == pytest.approx(stats.binomtest(row["b_only"], row["a_only"] + row["b_only"]).pvalue)
    assert row["p_holm"] == row["p"]  # a family of one


def test_holm_runs_over_every_pair_of_a_condition_and_metric(known):
    root, _ = known
    _write(root, "third", _results("mlp", 0, 0, {"real": ZEROS, "zeros": ZEROS}))
    configs = group_runs(load_runs([root]))
    rows = comparison_records(configs, ["real"], ["acc_normalized"], n_resamples=200)
    assert len(rows) == 3
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p"] for r in rows]))


def test_signal_audit_flags_a_configuration_whose_interval_covers_zero(known):
    root, _ = known
    configs = group_runs(load_runs([root]))
    rows = {r["configuration"]: r for r in audit_records(configs, "acc_normalized", n_resamples=500)}
    conv, spec = rows["encoder=conv1d"], rows["encoder=spectral"]
    assert conv["comparison"] == "real - zeros" and conv["pairs"] == 40 and conv["patients"] == 10
    assert conv["verdict"] == USES and conv["ci_low"] > 0
    assert spec["diff"] == 0.0 and spec["verdict"] == DOES_NOT_USE


def test_bad_inputs_are_refused_by_name(known, tmp_path):
    root, _ = known
    with pytest.raises(ConfigError, match="corpus-level"):
        write_report([root], tmp_path / "r1", ReportOptions(metric="bleu"))
    with pytest.raises(ConfigError, match="acc_normalized"):
        write_report([root], tmp_path / "r1", ReportOptions(metric="rouge9"))
    with pytest.raises(ConfigError, match="report.confidence"):
        ReportOptions(confidence=95)
    assert not (tmp_path / "r1").exists()  # refused before any work: nothing written
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no results.json in it"):
        write_report([tmp_path / "empty"], tmp_path / "r2")
    with pytest.raises(DataError, match="not found"):
        write_report([tmp_path / "missing"], tmp_path / "r2")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    with pytest.raises(DataError, match="bad/results.json"):
        write_report([tmp_path / "bad"], tmp_path / "r3")
    someone = tmp_path / "theirs"
    someone.mkdir()
    (someone / "notes.txt").write_text("mine")
    with pytest.raises(FolderError, match="not made by ecg-bench"):
        write_report([root], someone)
    assert (someone / "notes.txt").read_text() == "mine"


def test_results_without_samples_still_give_the_summary(tmp_path):
    for seed in (0, 1):
        res = _results("conv1d", 0, seed, {"real": ONES if seed else HALF})
        del res["samples"]
        _write(tmp_path / "runs", f"s{seed}", res)
    rep = write_report([tmp_path / "runs"], tmp_path / "report")
    assert set(rep.tables) == {"configurations", "summary", "per_question_type"}
    (row,) = [r for r in rep.tables["summary"].records if r["metric"] == "acc_normalized"]
    assert (row["runs"], row["mean"]) == (2, pytest.approx(0.75))


def test_report_folder_is_replaced_as_a_whole(known, tmp_path):
    root, _ = known
    out = tmp_path / "report"
    write_report([root], out, ReportOptions(examples=0))
    (out / "figures" / "stale.png").write_bytes(b"old")
    again = write_report([root], out, ReportOptions(examples=0))
    assert not (out / "figures" / "stale.png").exists() and (out / "index.html").is_file()
    assert {p.name for p in again.figures} == {"scores.png", "per_question_type.png"}  # no loss history, no store


def test_loss_history_reads_metrics_jsonl_and_skips_a_cut_line(known):
    from ecg_bench.evaluation.report.figures import loss_history

    root, _ = known
    run = load_runs([root / "conv-f0-s0"])[0]
    assert loss_history(run) is None  # no metrics.jsonl and no checkpoint
    rows = [{"step": s, "loss": 3.0 / s, "lr": 1e-3} for s in range(1, 6)]
    text = "\n".join(json.dumps(r) for r in rows) + '\n{"step": 6, "lo'
    (root / "conv-f0-s0" / "metrics.jsonl").write_text(text)
    steps, losses = loss_history(run)
    assert steps.tolist() == [1, 2, 3, 4, 5] and losses.tolist() == pytest.approx([3.0 / s for s in range(1, 6)])


def test_paths_recorded_relative_to_where_the_run_started_are_found_again(known, monkeypatch, tmp_path_factory):
    root, _ = known
    run = load_runs([root / "conv-f0-s0"])[0]
    (root / "store").mkdir()
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert run.locate("store") == root / "store"  # the run was started in root, its results say "store"
    assert run.locate(str(root / "store")) == root / "store" and run.locate("nowhere") is None and run.locate("") is None


# ---------------------------------------------------------------- the command on real tiny runs


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two real tiny runs (train 4 steps + evaluate under 4 conditions) of two configurations on the same fold."""
    from ecg_bench.config import ConditionOptions, choice
    from ecg_bench.pipeline import run
    from ecg_bench.presets import tiny

    root = tmp_path_factory.mktemp("sweep")
    for tokens in (2, 1):
        cfg = tiny(str(root / f"tokens{tokens}"))
        cfg.data.store_dir = str(root.parent / f"{root.name}-store")  # one store for both, outside the runs folder
        cfg.model.encoder.num_tokens = tokens
        cfg.eval.conditions = [choice(ConditionOptions, c) for c in ("real", "zeros", "shuffled", "no_signal")]
        run(cfg)
    return root


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _images_loaded(index: Path, tmp_path: Path) -> list[int]:
    """naturalWidth of every <img> of ``index`` once the page has loaded, read from the DOM headless Chromium dumps
    (a probe script added to a copy of the page writes them into an attribute)."""
    probe = ("<script>window.addEventListener('load', () => document.body.setAttribute('data-images', "
             "[...document.images].map(i => i.complete ? i.naturalWidth : 0).join(',')));</script>")  # fmt: skip
    page = tmp_path / "probe.html"
    page.write_text(index.read_text().replace("</body>", probe + "</body>"))
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          "--virtual-time-budget=5000", page.as_uri()], capture_output=True, text=True, timeout=120)  # fmt: skip
    marker = 'data-images="'
    assert marker in out.stdout, f"chromium printed no probe result: {out.stderr[-2000:]}"
    found = out.stdout.split(marker, 1)[1].split('"', 1)[0]
    return [int(x) for x in found.split(",")] if found else []


@pytest.mark.slow
def test_report_command_on_real_runs_writes_tables_figures_and_html(tiny_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["report", str(tiny_runs), "--out", str(out), "--report.examples", "2",
                     "--report.bootstrap_resamples", "200"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "num_tokens=2" in printed and "num_tokens=1" in printed and "index.html" in printed

    tables = out / "tables"
    for name in ("configurations", "summary", "per_question_type", "per_topic", "comparisons", "signal_audit"):
        assert all((tables / f"{name}.{ext}").stat().st_size > 0 for ext in ("md", "csv", "tex")), name
    md = (tables / "summary.md").read_text()
    assert "| configuration | condition | runs | acc_exact | acc_normalized |" in md
    rows = list(csv.DictReader((tables / "summary.csv").open()))
    real = json.loads((tiny_runs / "tokens2" / "results.json").read_text())["conditions"]["real"]
    got = next(r for r in rows if r["configuration"] == "num_tokens=2" and r["condition"] == "real"
               and r["metric"] == "acc_normalized")  # fmt: skip
    assert float(got["mean"]) == pytest.approx(real["metrics"]["acc_normalized"]) and got["runs"] == "1"
    assert [float(got["ci_low"]), float(got["ci_high"])] == pytest.approx(real["ci95"]["acc_normalized"])
    tex = (tables / "comparisons.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and "num\\_tokens=2" in tex
    comp = list(csv.DictReader((tables / "comparisons.csv").open()))
    assert {(r["a"], r["b"]) for r in comp} == {("num_tokens=1", "num_tokens=2")}  # configurations in path order
    n = real["num_samples"]
    assert all(int(r["pairs"]) == n and r["test"].startswith("McNemar") for r in comp if r["metric"] == "acc_normalized")
    audit = list(csv.DictReader((tables / "signal_audit.csv").open()))
    assert {r["comparison"] for r in audit} == {"real - zeros", "real - shuffled", "real - no_signal"}
    for r in audit:
        covers = float(r["ci_low"]) <= 0 <= float(r["ci_high"])
        assert (r["verdict"] == DOES_NOT_USE) == covers

    figs = {p.name for p in (out / "figures").iterdir()}
    assert figs == {"scores.png", "per_question_type.png", "per_topic.png", "training_loss.png", "example_1.png",
                    "example_2.png"}  # fmt: skip
    html = (out / "index.html").read_text()
    assert html.count("<img ") == 6 and "http://" not in html and "https://" not in html and "<table" in html
    if _chromium() is None:
        pytest.skip("no chromium installed (apt-get install chromium): the figures' rendering in a browser is not checked")
    widths = _images_loaded(out / "index.html", tmp_path)
    assert len(widths) == 6 and all(w > 0 for w in widths), widths
