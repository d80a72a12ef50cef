"""Named run-config presets used by the CLI and the tests."""

from __future__ import annotations

from ecg_bench.config import (
    DataConfig,
    EncoderOptions,
    EvalConfig,
    MappedOptions,
    MetricOptions,
    ModelConfig,
    RunConfig,
    SourceOptions,
    TrainConfig,
    choice,
)


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
        data=DataConfig(source=choice(SourceOptions, "synthetic", num_patients=600, records_per_patient=2),
                        mapped=choice(MappedOptions, "synthetic_qa", question_types=["verify", "choose"]),
                        segment_seconds=5.0, max_eval_items=200),
        model=ModelConfig(llm="mini", full_finetune=True, encoder=choice(EncoderOptions, "spectral", num_tokens=4)),
        train=TrainConfig(max_steps=1500, batch_size=16, lr=1e-3, encoder_lr=1e-3, log_every=250, device=device),
        eval=EvalConfig(batch_size=64, max_new_tokens=8, metrics=[choice(MetricOptions, m) for m in ("accuracy", "bleu", "rouge")]),
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
    cfg.data.source = choice(SourceOptions, "synthetic", num_patients=12, records_per_patient=1)
    cfg.data.segment_seconds, cfg.data.num_folds, cfg.data.max_eval_items = 2.0, 3, 8
    cfg.data.mapped = choice(MappedOptions, "synthetic_qa", question_types=["verify", "choose", "query"], multi_turn_fraction=0.25)
    cfg.model.llm, cfg.model.full_finetune = "tiny", False
    cfg.model.encoder = choice(EncoderOptions, "conv1d", num_tokens=2, dim=32)
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.log_every = 4, 4, 2
    cfg.eval.batch_size, cfg.eval.max_new_tokens = 8, 4
    cfg.output_dir = output_dir
    return cfg
