"""``llmi train grpo``: GRPO on one machine with TRL's ``GRPOTrainer`` and llmi's rewards.

``train(GRPOSettings(...))`` runs five stages:

1. **data**: the parquet files ``llmi data prepare`` wrote (chat prompts, ``extra_info``);
2. **model**: ``llmi.train.model.trainable_model`` (the packaged SmolLM2 by default), optionally
   with a LoRA adapter (peft);
3. **rewards**: ``llmi.rewards.trl.LlmiRewards`` over one ``RewardScorer``: the tools run
   during scoring, once per completion, however many reward functions ask;
4. **trainer**: LLM-I's hyper-parameters where they fit one machine (no KL, token-mean loss,
   dual-clip 10, cosine learning rate with warm-up, weight decay 0.1, clipping 1.0, 8
   completions per prompt), the loss of your choice, generation with vLLM on a GPU or with
   llama.cpp on a CPU (``llmi.train.rollout``), checkpoints every ``save_steps`` and resume;
5. **logs**: ``metrics.jsonl`` (TRL's figures, tag well-formedness, the time each stage of a step
   took), ``curve.png``, and ``samples/``: every ``samples_every`` steps a page of documents —
   the very documents the reward scored, never re-rendered by running the tools again.

The final model lands in ``OUT/final`` (a LoRA adapter merged into it), with the GGUF metadata
``llmi generate --model OUT/final`` needs.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from ..errors import ConfigError, MissingDependency

__all__ = ["GENERATION", "LOSSES", "REWARD_FUNCTIONS", "GRPOSettings", "TrainResult", "generation_backend", "train"]

#: loss name -> GRPOConfig fields (GSPO: sequence-level importance ratios, its tight clipping)
LOSSES: Mapping[str, Mapping[str, Any]] = {
    "dapo": {"loss_type": "dapo"},  # token-mean over the batch: LLM-I's loss_agg_mode
    "grpo": {"loss_type": "grpo"},  # each sequence's token-mean, then the mean over sequences
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none"},
    "gspo": {"loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4},
}
#: how completions are generated: vLLM (a GPU), llama.cpp (CPU, full fine-tuning), transformers
GENERATION = ("auto", "transformers", "vllm", "llama-cpp")
#: the reward functions of ``llmi.rewards.trl.LlmiRewards`` a run may use
REWARD_FUNCTIONS = ("combined", "img_num", "llm", "mllm", "r_tool", "tag_validity")


@dataclass(frozen=True)
class GRPOSettings:
    """One ``llmi train grpo`` run. Defaults are LLM-I's where they fit one machine.

    ``rewards`` pairs reward functions (``REWARD_FUNCTIONS``) with weights; ``reward_settings``
    are ``llmi.rewards.settings.RewardSettings`` fields (factors, profile, options).
    ``without_judges`` trains on the rule parts alone (the judges' factors set to 0).
    ``learning_rate=None`` is LLM-I's 1e-6 for full fine-tuning, 1e-5 with LoRA.
    """

    train_files: tuple[Path, ...]
    output_dir: Path
    model: str | None = None
    test_files: tuple[Path, ...] = ()
    loss: Literal["dapo", "grpo", "dr_grpo", "gspo"] = "dapo"
    rewards: tuple[tuple[str, float], ...] = (("combined", 1.0),)
    reward_settings: Mapping[str, Any] = field(default_factory=dict)
    without_judges: bool = False
    num_generations: int = 8
    prompts_per_step: int = 8
    max_steps: int = -1
    epochs: float = 1.0
    learning_rate: float | None = None
    warmup_steps: int = 5
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    dual_clip: float | None = 10.0
    max_completion_length: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: int = 32
    generation: Literal["auto", "transformers", "vllm", "llama-cpp"] = "auto"
    threads: int | None = None  # CPU threads for torch and llama.cpp (default: half the cores)
    save_steps: int = 50
    save_total_limit: int | None = 3
    resume: bool = False
    samples_every: int = 10
    samples_per_log: int = 4
    eval_steps: int | None = None
    seed: int = 0
    log_steps: int = 1

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose {', '.join(LOSSES)}")
        for name, weight in self.rewards:
            if name not in REWARD_FUNCTIONS:
                raise ConfigError(f"unknown reward {name!r}; choose from {', '.join(REWARD_FUNCTIONS)}")
            if not isinstance(weight, (int, float)):
                raise ConfigError(f"the weight of reward {name!r} must be a number")
        if not self.rewards:
            raise ConfigError("give at least one reward")
        if self.num_generations < 2:
            raise ConfigError("GRPO compares completions: num_generations must be at least 2")
        if self.prompts_per_step < 1 or self.save_steps < 1 or self.samples_every < 0:
            raise ConfigError("prompts_per_step and save_steps must be at least 1, samples_every 0 or more")
        if self.dual_clip is not None and self.dual_clip <= 1:
            raise ConfigError("dual_clip must be more than 1 (LLM-I uses 10), or None to switch it off")
        if not self.train_files:
            raise ConfigError("no training data: give the train.parquet that `llmi data prepare` wrote")
        if self.generation not in GENERATION:
            raise ConfigError(f"unknown generation {self.generation!r}; choose {', '.join(GENERATION)}")

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else (1e-5 if self.lora else 1e-6)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(train_files=[str(p) for p in self.train_files], test_files=[str(p) for p in self.test_files],
                   output_dir=str(self.output_dir), reward_settings=dict(self.reward_settings), learning_rate=self.lr)
        return out


@dataclass(frozen=True)
class TrainResult:
    final_dir: Path
    metrics: Path
    curve: Path | None
    samples: Path
    steps: int


def train(settings: GRPOSettings, *, rewards: Any = None, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run GRPO as ``settings`` say; see the module docstring.

    ``rewards`` replaces the ``LlmiRewards`` built from ``settings.reward_settings`` and the
    environment (for a scorer of your own: other tools, judges or engine limits).
    """
    try:
        import torch
        from trl import GRPOTrainer
    except ImportError:
        raise MissingDependency("trl", "train") from None
    from .logs import CopyMeta, MetricsLog, SampleLog, StepClock, plot_curve
    from .model import GGUF_META, trainable_model

    out = Path(settings.output_dir)
    _check_output(out, settings.resume)
    torch.set_num_threads(settings.threads or _half_the_cores())
    # 1. data, 2. model, and how it generates
    train_set = load_prompts(settings.train_files)
    eval_set = load_prompts(settings.test_files) if settings.test_files else None
    model_path = trainable_model(settings.model)
    backend = generation_backend(settings, model_path)
    # 3. rewards
    rewards, funcs, weights = reward_functions(settings, rewards)
    clock = StepClock()
    samples = SampleLog(out / "samples", every=settings.samples_every, per_log=settings.samples_per_log)
    metrics = MetricsLog(out / "metrics.jsonl", clock=clock, resume=settings.resume)
    rewards.on_batch = _fan_out(samples.record, metrics.record, clock.record_rewards)
    # 4. trainer
    out.mkdir(parents=True, exist_ok=True)
    (out / "llmi-train.json").write_text(json.dumps(settings.to_dict(), indent=2), encoding="utf-8")
    rollout = _rollout(settings, Path(model_path)) if backend == "llama-cpp" else None
    trainer_cls = _timed_trainer(GRPOTrainer, clock)
    with warnings.catch_warnings():
        # TRL calls rollout functions experimental; llmi's is tested against its version (trl==1.16.0)
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
        trainer = trainer_cls(
            model=model_path, reward_funcs=funcs, args=grpo_config(settings, weights, use_vllm=backend == "vllm"),
            train_dataset=train_set, eval_dataset=eval_set, peft_config=_lora(settings), rollout_func=rollout,
            callbacks=[clock, metrics, samples, CopyMeta(Path(model_path) / GGUF_META), *callbacks],
        )
    try:
        trainer.train(resume_from_checkpoint=True if settings.resume else None)
    finally:
        rewards.scorer.close()
        if rollout is not None:
            rollout.close()
    # 5. the final model, ready for `llmi generate --model`
    final = save_final(trainer, out / "final", Path(model_path))
    curve = plot_curve(out / "metrics.jsonl", out / "curve.png")
    return TrainResult(final_dir=final, metrics=out / "metrics.jsonl", curve=curve, samples=out / "samples",
                       steps=trainer.state.global_step)


def _check_output(out: Path, resume: bool) -> None:
    has_checkpoints = out.is_dir() and any(out.glob("checkpoint-*"))
    if resume and not has_checkpoints:
        raise ConfigError(f"--resume: {out} holds no checkpoint to resume from")
    if not resume and (has_checkpoints or (out / "final").exists()):
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")


def load_prompts(files: Sequence[Path]) -> Any:
    """The prepared parquet rows as a ``datasets.Dataset`` TRL can sample prompts from."""
    try:
        import datasets
    except ImportError:
        raise MissingDependency("datasets", "train") from None
    from .data import summarise

    for path in files:
        if not Path(path).is_file():
            raise ConfigError(f"{path} does not exist; write it with `llmi data prepare`")
        summary = summarise(path, first=0)
        if summary.errors:
            raise ConfigError(f"{summary.errors[0]}; check the file with `llmi data inspect {path}`")
        if any(k for k, n in summary.by_input_images.items() if n and k):
            raise ConfigError(f"{path} has rows with input images: `llmi train grpo` trains text models; "
                              "train vision models with the verl recipe grpo-qwen2.5-vl-7b")
    data = datasets.load_dataset("parquet", data_files=[str(p) for p in files], split="train")
    # Text rows carry an empty image list; TRL would take an "images" column for a vision model.
    return data.remove_columns([c for c in ("images",) if c in data.column_names])


def reward_functions(settings: GRPOSettings, rewards: Any = None) -> tuple[Any, list[Any], list[float]]:
    """llmi's TRL reward functions for the run, sharing one scoring per completion."""
    if rewards is None:
        from ..rewards.trl import LlmiRewards

        values = dict(settings.reward_settings)
        if settings.without_judges:
            values.update(llm_factor=0.0, mllm_factor=0.0, require_judges=False)
        rewards = LlmiRewards.from_settings(values)
    funcs = [getattr(rewards, name) for name, _ in settings.rewards]
    return rewards, funcs, [float(w) for _, w in settings.rewards]


def generation_backend(settings: GRPOSettings, model_path: str) -> str:
    """``vllm`` with a GPU and vLLM; on a CPU ``llama-cpp`` where the model can be written to GGUF
    (a model started from one, every weight trained); else ``transformers``. An explicit choice
    that cannot work is a ``ConfigError``."""
    import torch

    from . import rollout
    from .export import can_export

    gpu = torch.cuda.is_available()
    vllm_ok = gpu and _has_vllm()
    folder = Path(model_path)
    llama_ok = rollout.available() and not settings.lora and folder.is_dir() and can_export(_config(folder), folder)
    choice = settings.generation
    if choice == "auto":
        return "vllm" if vllm_ok else "llama-cpp" if llama_ok and not gpu else "transformers"
    if choice == "vllm" and not vllm_ok:
        raise ConfigError("vLLM generation needs a CUDA GPU and the vllm package (pip install vllm)")
    if choice == "llama-cpp" and not llama_ok:
        raise ConfigError("llama.cpp generation needs llama-cpp-python, full fine-tuning (no --lora) and a model "
                          "llmi can write to GGUF (one it started from a GGUF: llama, qwen2 or qwen3)")
    return choice


def grpo_config(settings: GRPOSettings, weights: Sequence[float], *, use_vllm: bool = False) -> Any:
    """TRL's ``GRPOConfig`` for ``settings``."""
    import torch
    from trl import GRPOConfig

    gpu = torch.cuda.is_available()
    loss = dict(LOSSES[settings.loss])
    return GRPOConfig(
        output_dir=str(settings.output_dir),
        # one update per batch of prompts x completions, as LLM-I's mini-batch = batch
        per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        num_generations=settings.num_generations,
        steps_per_generation=1,
        max_steps=settings.max_steps,
        num_train_epochs=settings.epochs,
        learning_rate=settings.lr,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": settings.min_lr_ratio},
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        beta=0.0,  # no KL term and no reference model, as LLM-I
        delta=settings.dual_clip if settings.loss != "gspo" else None,
        epsilon=loss.pop("epsilon", 0.2),
        epsilon_high=loss.pop("epsilon_high", 0.2),
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        top_p=settings.top_p,
        reward_weights=list(weights),
        use_vllm=use_vllm,
        vllm_mode="colocate",
        bf16=gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not gpu,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        eval_strategy="steps" if settings.eval_steps and settings.test_files else "no",
        eval_steps=settings.eval_steps,
        logging_steps=settings.log_steps,
        report_to="none",
        seed=settings.seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
        **loss,
    )


def save_final(trainer: Any, folder: Path, base: Path) -> Path:
    """The trained model as a plain Hugging Face folder (LoRA merged), with the base's GGUF
    metadata so that ``llmi generate --model FOLDER`` can export it."""
    from .model import GGUF_META

    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # a peft model
        model = model.merge_and_unload()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    trainer.processing_class.save_pretrained(folder)
    if (base / GGUF_META).is_file():
        shutil.copy2(base / GGUF_META, folder / GGUF_META)
    return folder


def _lora(settings: GRPOSettings) -> Any:
    if not settings.lora:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise MissingDependency("peft", "train") from None
    return LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def _rollout(settings: GRPOSettings, folder: Path) -> Any:
    from .model import GGUF_META
    from .rollout import LlamaCppRollout

    return LlamaCppRollout(folder / GGUF_META, temperature=settings.temperature, top_p=settings.top_p,
                           max_tokens=settings.max_completion_length, threads=settings.threads or _half_the_cores(),
                           seed=settings.seed)


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _half_the_cores() -> int:
    # As for the embedded writer: on a busy machine, threads that spin waiting for each other
    # cost far more than the parallelism gains.
    return max(1, (os.cpu_count() or 2) // 2)


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _fan_out(*handlers: Any) -> Any:
    def call(*args: Any) -> None:
        for handler in handlers:
            handler(*args)

    return call


def _timed_trainer(base: type, clock: Any) -> type:
    """``GRPOTrainer`` with its generation and reward stages timed by ``clock``."""

    class TimedGRPOTrainer(base):  # type: ignore[misc, valid-type]
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            with clock.stage("generation"):
                return super()._generate(*args, **kwargs)

        def _calculate_rewards(self, *args: Any, **kwargs: Any) -> Any:
            with clock.stage("rewards"):
                return super()._calculate_rewards(*args, **kwargs)

    return TimedGRPOTrainer
