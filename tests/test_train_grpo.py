"""`llmi train grpo`: TRL's GRPOTrainer with llmi's rewards, on a tiny model, for real."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("trl")

from train_fixtures import smollm2_trainable, tiny_model  # noqa: E402,F401

from llmi.cli import main  # noqa: E402
from llmi.errors import ConfigError  # noqa: E402
from llmi.train.data import prepare_sync  # noqa: E402
from llmi.train.grpo import GRPOSettings, generation_backend, grpo_config, load_prompts  # noqa: E402
from llmi.train.rows import RowRules  # noqa: E402

CODE_TAG = "<imgen>{'source': 'code', 'description': 'bars', 'params': {'code': 'plt.bar([1, 2], [3, 4])'}}</imgen>"
SEARCH_TAG = "<imgen>{'source': 'search', 'description': 'an owl', 'params': {'query': 'owl'}}</imgen>"


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("grpo-data")
    rows = [{"prompt": q, "image_num": 1, "tools": ["search"]} for q in
            ("Tell me about owls.", "Explain tides.", "Chart the rain in Oslo.", "Describe a lighthouse.")]
    (folder / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare_sync([folder / "p.jsonl"], folder, RowRules(system_prompt="Write with pictures."), test_size=1)
    return folder


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output + (repr(result.exception) if result.exception and result.exit_code != 0 else "")


def test_two_commands_train_checkpoint_resume_and_leave_logs(prompts, tiny_model, tmp_path, monkeypatch) -> None:
    """Steps 1-2 sample with llama.cpp (the CPU default), step 3, resumed, with transformers."""
    monkeypatch.setenv("LLMI_SEARCH_BACKEND", "none")
    out = tmp_path / "run"
    common = ["train", "grpo", str(prompts / "train.parquet"), "--out", str(out), "--model", str(tiny_model),
              "--without-judges", "--reward", "tag_validity", "--reward", "img_num=0.5", "--num-generations", "2",
              "--prompts-per-step", "2", "--max-completion-length", "8", "--save-steps", "1", "--samples-every", "1",
              "--learning-rate", "1e-3", "--warmup-steps", "0"]
    code, output = run(*common, "--max-steps", "2")
    assert code == 0, output
    assert f"model: {out / 'final'}" in output
    final = out / "final"
    assert (final / "config.json").is_file() and (final / "llmi-gguf.json").is_file()
    assert (out / "checkpoint-2" / "llmi-gguf.json").is_file()  # every checkpoint can be exported
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert {"rewards/llmi_tag_validity/mean", "rewards/llmi_img_num/mean", "tags/answers_with_tags",
                "time/step", "time/generation", "time/rewards", "time/tools", "time/judges", "time/optimisation"} <= set(r)
        assert r["time/step"] >= r["time/generation"] + r["time/rewards"] - 1e-6
    assert (out / "curve.png").stat().st_size > 1000
    page = (out / "samples" / "step-000001" / "index.html").read_text()
    assert "Tell me about owls." in page or "Explain tides." in page or "Chart the rain" in page
    assert (out / "samples" / "index.html").read_text().count("<li>") == 2
    settings = json.loads((out / "llmi-train.json").read_text())
    assert settings["rewards"] == [["tag_validity", 1.0], ["img_num", 0.5]] and settings["loss"] == "dapo"

    code, output = run(*common, "--max-steps", "2")
    assert code == 2 and "already holds a run; pass --resume" in output
    code, output = run(*common, "--max-steps", "3", "--resume", "--generation", "transformers")
    assert code == 0, output
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "reward" in json.loads(line)]
    assert steps == [1, 2, 3]  # resumed from checkpoint-2: nothing lost, nothing repeated


@pytest.mark.parametrize("loss, expected", [
    ("dapo", {"loss_type": "dapo", "importance_sampling_level": "token", "delta": 10.0}),
    ("grpo", {"loss_type": "grpo", "delta": 10.0, "scale_rewards": "group"}),
    ("dr_grpo", {"loss_type": "dr_grpo", "scale_rewards": "none"}),
    ("gspo", {"importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4, "delta": None}),
])
def test_losses_map_to_trl_and_keep_llmi_defaults(tmp_path, loss, expected) -> None:
    settings = GRPOSettings(train_files=(tmp_path / "t.parquet",), output_dir=tmp_path / "out", loss=loss,
                            num_generations=4, prompts_per_step=2)
    config = grpo_config(settings, [1.0])
    for key, value in expected.items():
        assert getattr(config, key) == value, key
    assert (config.beta, config.weight_decay, config.max_grad_norm, config.warmup_steps) == (0.0, 0.1, 1.0, 5)
    assert config.learning_rate == 1e-6 and config.lr_scheduler_type == "cosine_with_min_lr"
    assert config.lr_scheduler_kwargs == {"min_lr_rate": 0.01}
    assert config.per_device_train_batch_size == 8 and config.num_generations == 4 and config.use_vllm is False
    lora = GRPOSettings(train_files=(tmp_path / "t.parquet",), output_dir=tmp_path / "out", lora=True)
    assert lora.lr == 1e-5


def test_settings_errors_are_clear(tmp_path) -> None:
    base = {"train_files": (tmp_path / "t.parquet",), "output_dir": tmp_path / "out"}
    for kwargs, message in [({"loss": "ppo"}, "unknown loss"), ({"rewards": (("fluency", 1.0),)}, "unknown reward"),
                            ({"num_generations": 1}, "at least 2"), ({"dual_clip": 0.5}, "more than 1"),
                            ({"train_files": ()}, "no training data")]:
        with pytest.raises(ConfigError, match=message):
            GRPOSettings(**{**base, **kwargs})
    with pytest.raises(ConfigError, match="unknown generation"):
        GRPOSettings(**base, generation="onnx")
    with pytest.raises(ConfigError, match="vLLM generation needs a CUDA GPU"):
        generation_backend(GRPOSettings(**base, generation="vllm"), str(tmp_path))
    with pytest.raises(ConfigError, match="llama.cpp generation needs"):
        generation_backend(GRPOSettings(**base, generation="llama-cpp", lora=True), str(tmp_path))


def test_generation_defaults_to_llama_cpp_on_a_cpu_for_gguf_born_models(tiny_model, tmp_path) -> None:
    base = {"train_files": (tmp_path / "t.parquet",), "output_dir": tmp_path / "out"}
    assert generation_backend(GRPOSettings(**base), str(tiny_model)) == "llama-cpp"
    assert generation_backend(GRPOSettings(**base, lora=True), str(tiny_model)) == "transformers"
    assert generation_backend(GRPOSettings(**base), "HuggingFaceTB/SmolLM2-135M-Instruct") == "transformers"


def test_text_trainer_refuses_image_rows_and_bad_files(tmp_path) -> None:
    from PIL import Image

    Image.new("RGB", (30, 30), "blue").save(tmp_path / "a.png")
    (tmp_path / "mm.jsonl").write_text(json.dumps({"prompt": "Edit it", "images": ["a.png"]}) + "\n")
    report = prepare_sync([tmp_path / "mm.jsonl"], tmp_path / "mm", RowRules())
    with pytest.raises(ConfigError, match="trains text models"):
        load_prompts([report.outputs["train"]])
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompts([tmp_path / "nope.parquet"])


def test_scoring_runs_each_tool_once_and_the_sample_log_reuses_those_documents(tmp_path) -> None:
    from llmi.engine import Engine
    from llmi.rewards.config import RewardFactors
    from llmi.rewards.scorer import RewardScorer
    from llmi.rewards.trl import LlmiRewards
    from llmi.testing import LatencyTool
    from llmi.train.logs import SampleLog, tag_metrics

    search, code = LatencyTool("search", latency=0.01), LatencyTool("code", latency=0.01)
    engine = Engine({"search": search, "code": code}, cache=False)
    scorer = RewardScorer(engine, llm_judge=None, mllm_judge=None,
                          factors=RewardFactors(llm_factor=0.0, mllm_factor=0.0))
    seen = []
    rewards = LlmiRewards(scorer, on_batch=lambda *batch: seen.append(batch))
    completions = [[{"role": "assistant", "content": f"Owls.\n{SEARCH_TAG}\nBars.\n{CODE_TAG}"}],
                   [{"role": "assistant", "content": "No picture. <script>alert(1)</script>"}],
                   [{"role": "assistant", "content": "Broken <imgen>{'source': 'painting'}</imgen>"}],
                   [{"role": "assistant", "content": f"One.\n{SEARCH_TAG.replace('owl', 'tide')}"}]]
    prompts = [[{"role": "user", "content": q}] for q in ("Owls?", "Owls?", "Rain?", "Rain?")]
    columns = {"extra_info": [{"image_num": 1, "question": "q", "tools": ["search"], "split": "train"}] * 4}

    async def one_step():  # TRL calls every reward function with the same completions list
        return await asyncio.gather(rewards.tag_validity(prompts, completions, **columns),
                                    rewards.img_num(prompts, completions, **columns))

    validity, img_num = asyncio.run(one_step())
    assert (search.calls, code.calls) == (2, 1)  # one run per tag, however many functions asked
    assert validity == [1.0, 1.0, 0.0, 1.0] and img_num == [pytest.approx(0.7), 0.0, 0.0, 1.0]  # 2 images for N=1: 1 - 0.3
    assert tag_metrics(rewards.last_batch) == {
        "tags/answers_with_tags": 0.75, "tags/answers_well_formed": 0.5, "tags/per_answer": 1.0,
        "tags/well_formed": 0.75, "tags/images_ok": 0.75}

    log = SampleLog(tmp_path / "samples", every=1, per_log=2)
    [(step, batch_prompts, batch_completions, breakdowns)] = seen
    folder = log.write(7, batch_prompts, batch_completions, breakdowns, group=2)
    assert (search.calls, code.calls) == (2, 1)  # the page shows the scored documents, no tool ran again
    page = (folder / "index.html").read_text()
    assert page.count("<tr>") == 5 and "best" in page and "worst" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # model text is escaped
    assert (folder / "sample-0" / "index.html").read_text().count("<img") == 2
    assert (folder / "sample-0" / "document.json").is_file()  # so that llmi view opens the sample
    meta = json.loads((folder / "sample-0" / "document.json").read_text())["meta"]  # ... with its reward
    assert meta["training"] == "step 7, sample 0: the best of its group" and meta["reward"] == pytest.approx(0.14)
    assert meta["reward/img_num_score"] == pytest.approx(0.7)
    scorer.close()


def test_llama_cpp_rollouts_sample_the_policy_and_report_its_log_probabilities(tiny_model) -> None:
    import types

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmi.train.rollout import LlamaCppRollout

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    trainer = types.SimpleNamespace(model=model, processing_class=tokenizer, state=types.SimpleNamespace(global_step=0))
    rollout = LlamaCppRollout(tiny_model / "llmi-gguf.json", temperature=0.7, top_p=1.0, max_tokens=12, threads=1,
                              outtype="f32")
    prompts = [[{"role": "user", "content": "Tell me about owls."}]] * 2 + [[{"role": "user", "content": "Tides?"}]]
    try:
        out = rollout(prompts, trainer)
        first_file = next(rollout._folder.glob("policy-*.gguf"))
        assert [len(c) for c in out["completion_ids"]] == [12, 12, 12]
        assert out["completion_ids"][0] != out["completion_ids"][1]  # each completion is its own sample
        for prompt, ids, completion, logprobs in zip(prompts, out["prompt_ids"], out["completion_ids"], out["logprobs"]):
            assert ids == tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([ids + completion])).logits[0, len(ids) - 1:-1] / 0.7
            expected = logits.log_softmax(-1).gather(1, torch.tensor(completion)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(logprobs), expected, atol=2e-3)
        with torch.no_grad():  # an optimiser step: the next rollout samples the new weights
            for p in model.parameters():
                p.add_(0.01)
        trainer.state.global_step = 1
        rollout(prompts[:1], trainer)
        assert not first_file.exists() and len(list(rollout._folder.glob("policy-*.gguf"))) == 1
    finally:
        rollout.close()
    assert not rollout._folder.exists()
