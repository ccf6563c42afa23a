"""The TRL reward functions: one scoring per completion per step however many functions ask,
inside a real GRPOTrainer step with a tiny model on CPU."""

from __future__ import annotations

import asyncio

import pytest

from llmi.engine import Engine
from llmi.rewards import JudgeClient, JudgeLimits, LLMJudge, MLLMJudge, RewardOptions, RewardScorer
from llmi.rewards.trl import LlmiRewards, completion_text
from llmi.testing import LatencyTool

from rewards_fixtures import LLM_OK, MLLM_OK, Reply, judge_server, search_tag, tiny_tokenizer_dir  # noqa: F401


def make_rewards(judge_server, name, *, llm=(LLM_OK,), options=None, tool=None):
    limits = JudgeLimits(retries=0, timeout=10)
    engine = Engine({"search": tool or LatencyTool("search", latency=0.01)})
    scorer = RewardScorer(
        engine, options=options,
        llm_judge=LLMJudge(JudgeClient(judge_server.script(f"{name}-llm", *llm), limits=limits)),
        mllm_judge=MLLMJudge(JudgeClient(judge_server.script(f"{name}-mllm", MLLM_OK), limits=limits)),
    )
    return LlmiRewards(scorer), engine


def call_all(rewards, funcs, prompts, completions, **columns):
    async def together():
        return await asyncio.gather(*(f(prompts=prompts, completions=completions, **columns) for f in funcs))

    return asyncio.run(together())


def test_every_function_shares_one_scoring(judge_server):
    tool = LatencyTool("search", latency=0.02)
    rewards, engine = make_rewards(judge_server, "share", tool=tool)
    completions = [[{"role": "assistant", "content": f"Owl {i}. " + search_tag(f"owl {i % 2}")}] for i in range(4)]
    prompts = [[{"role": "user", "content": "Show me an owl"}]] * 4
    funcs = [rewards.combined, rewards.img_num, rewards.mllm, rewards.llm, rewards.r_tool, rewards.tag_validity]
    columns = dict(image_num=[1] * 4, tools=[["search"]] * 4, split=["train"] * 4)
    combined, n, mllm, llm, r_tool, validity = call_all(rewards, funcs, prompts, completions, **columns)
    assert tool.calls == 2 and len(judge_server.bodies("share-llm")) == 4 and len(judge_server.bodies("share-mllm")) == 4
    funcs_w, weights = rewards.weighted()
    parts = call_all(rewards, funcs_w, prompts, completions, **columns)  # same batch again: nothing re-run
    assert len(judge_server.bodies("share-llm")) == 4
    assert combined == pytest.approx([sum(w * p[i] for w, p in zip(weights, parts)) for i in range(4)])
    assert n == [1.0] * 4 and validity == [1.0] * 4 and r_tool == [1.0] * 4
    # the question came from the prompt's user turn; the breakdowns keep the documents
    assert "Question: Show me an owl" in judge_server.bodies("share-llm")[0]["messages"][1]["content"]
    assert [b.id for b in rewards.last_batch] == ["0", "1", "2", "3"]
    assert rewards.last_batch[0].document.images
    engine.close()


def test_extra_info_column_and_exclusion(judge_server):
    rewards, engine = make_rewards(judge_server, "excl", llm=(Reply(status=500, body={"error": "down"}),),
                                   options=RewardOptions(on_error="exclude"))
    info = [{"image_num": -1, "question": "Say hi", "tools": [], "split": "train"}, {"question": "no image_num"}]
    out = call_all(rewards, [rewards.combined, rewards.llm], ["p", "p"], ["Hi.", "Hi."], extra_info=info)
    assert out == [[None, None], [None, None]]  # excluded from every function: TRL leaves them out
    assert [b.status for b in rewards.last_batch] == ["excluded", "excluded"]
    engine.close()


def test_completion_shapes():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "chat"}]) == "chat"


def test_only_a_missing_question_comes_from_the_prompt():
    from llmi.rewards.trl import _row

    prompt = [{"role": "system", "content": "rules"}, {"role": "user", "content": "Draw an owl."}]
    row = {"image_num": 1, "tools": [], "split": "train"}
    assert _row(0, prompt, {"extra_info": [row]})["question"] == "Draw an owl."
    assert _row(0, prompt, {"extra_info": [{**row, "question": None}]})["question"] == "Draw an owl."
    # LLM-I asks its judges "Question: \nAnswer: ..." for an empty question: it is kept
    assert _row(0, prompt, {"extra_info": [{**row, "question": ""}]})["question"] == ""


def test_a_real_grpo_step(judge_server, tiny_tokenizer_dir, tmp_path):
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    rows = [{"prompt": f"Tell me about owls {i}.", "image_num": -1, "question": "Tell me about owls", "tools": [],
             "split": "train"} for i in range(2)]
    rewards, engine = make_rewards(judge_server, "grpo")
    seen = []
    rewards.on_batch = lambda step, prompts, completions, breakdowns: seen.append((step, len(breakdowns)))
    funcs, weights = rewards.weighted()
    args = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=12,
                          max_steps=1, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no",
                          reward_weights=weights, bf16=False)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=datasets.Dataset.from_list(rows),
                              processing_class=tok)
    trainer.train()
    engine.close()
    assert seen and all(n == 4 for _, n in seen)
    assert len(judge_server.bodies("grpo-llm")) == sum(n for _, n in seen)  # four functions, one judging each
    logged = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    assert {"llmi/score", "llmi/img_num_score", "rewards/llmi_llm/mean"} <= set(logged)
    # TRL's weighted sum of the parts is the scorer's R
    scores = [b.score for _, batch in rewards.history for b in batch]
    assert logged["reward"] == pytest.approx(sum(scores) / len(scores), abs=1e-6)


def test_training_refuses_a_reward_without_its_judges():
    from llmi.errors import ConfigError

    engine = Engine()
    with pytest.raises(ConfigError, match="LLM_JUDGE_BASE_URL"):
        LlmiRewards(RewardScorer(engine))
    rules = LlmiRewards(RewardScorer(engine), require_judges=False)
    assert call_all(rules, [rules.combined], ["p"], ["Hi."], image_num=[-1], tools=[[]], split=["train"])[0] == [None]
    engine.close()
