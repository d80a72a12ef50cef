"""Named run-config presets used by the CLI and the tests."""

from __future__ import annotations

from ecg_bench.config import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig


def quickstart() -> RunConfig:
    """The embedded default: synthetic 12-lead ECGs with verifiable attributes and questions about them.

    Sized to finish within about 5 minutes on 2 CPU cores with SmolLM2-135M-Instruct.
    """
    return RunConfig(
        data=DataConfig(source="synthetic", mapped="synthetic_qa", num_patients=150, records_per_patient=2,
                        segment_seconds=5.0, question_types=["verify", "choose"], max_eval_items=60),
        model=ModelConfig(llm="smollm2-135m", elm="llava", encoder="conv1d", num_ecg_tokens=4),
        train=TrainConfig(max_steps=120, batch_size=8, lr=1e-3, encoder_lr=3e-3, log_every=10),
        eval=EvalConfig(batch_size=32, max_new_tokens=8, metrics=["accuracy", "bleu", "rouge"]),
        output_dir="runs/quickstart",
    )  # fmt: skip


def tiny(output_dir: str) -> RunConfig:
    """The quickstart path shrunk for tests: the random 2-layer ``tiny`` LLM and a few dozen ECGs."""
    cfg = quickstart()
    cfg.data.num_patients, cfg.data.records_per_patient, cfg.data.segment_seconds = 12, 1, 2.0
    cfg.data.num_folds, cfg.data.max_eval_items, cfg.data.multi_turn_fraction = 3, 8, 0.25
    cfg.data.question_types = ["verify", "choose", "query"]
    cfg.model.llm, cfg.model.num_ecg_tokens, cfg.model.encoder_dim = "tiny", 2, 32
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.log_every = 4, 4, 2
    cfg.eval.batch_size, cfg.eval.max_new_tokens = 8, 4
    cfg.output_dir = output_dir
    return cfg
