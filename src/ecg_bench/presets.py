"""Named run-config presets used by the CLI and the tests."""

from __future__ import annotations

from ecg_bench.config import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig


def quickstart(device: str = "auto") -> RunConfig:
    """The embedded default: synthetic 12-lead ECGs with verifiable attributes and questions about them.

    On a CPU (measured: about 3 minutes on 2 cores) the LLM is ``mini``, a 4-layer Llama trained from
    scratch with SmolLM2's tokenizer: SmolLM2-135M with LoRA does not learn to use the ECG in the few
    hundred steps 2 cores allow in 5 minutes (see README). On a CUDA device the LLM is the real
    SmolLM2-135M-Instruct with LoRA and more steps.
    """
    import torch

    gpu = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    cfg = RunConfig(
        data=DataConfig(source="synthetic", mapped="synthetic_qa", num_patients=600, records_per_patient=2,
                        segment_seconds=5.0, question_types=["verify", "choose"], max_eval_items=200),
        model=ModelConfig(llm="mini", full_finetune=True, elm="llava", encoder="spectral", num_ecg_tokens=4),
        train=TrainConfig(max_steps=1500, batch_size=16, lr=1e-3, encoder_lr=1e-3, log_every=250, device=device),
        eval=EvalConfig(batch_size=64, max_new_tokens=8, metrics=["accuracy", "bleu", "rouge"]),
        output_dir="runs/quickstart",
    )  # fmt: skip
    if gpu:
        cfg.model.llm, cfg.model.full_finetune = "smollm2-135m", False
        cfg.model.lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        cfg.train.max_steps, cfg.train.batch_size, cfg.train.lr, cfg.train.encoder_lr = 2000, 32, 5e-4, 2e-3
        cfg.train.log_every = 100
    return cfg


def tiny(output_dir: str) -> RunConfig:
    """The quickstart path shrunk for tests: the random 2-layer ``tiny`` LLM and a few dozen ECGs."""
    cfg = quickstart(device="cpu")
    cfg.data.num_patients, cfg.data.records_per_patient, cfg.data.segment_seconds = 12, 1, 2.0
    cfg.data.num_folds, cfg.data.max_eval_items, cfg.data.multi_turn_fraction = 3, 8, 0.25
    cfg.data.question_types = ["verify", "choose", "query"]
    cfg.model.llm, cfg.model.full_finetune, cfg.model.encoder = "tiny", False, "conv1d"
    cfg.model.num_ecg_tokens, cfg.model.encoder_dim = 2, 32
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.log_every = 4, 4, 2
    cfg.eval.batch_size, cfg.eval.max_new_tokens = 8, 4
    cfg.output_dir = output_dir
    return cfg
