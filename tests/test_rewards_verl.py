"""The verl adapter driven by verl's own reward-loop worker on CPU, with verl's DataProto: the
same numbers as the scorer, the same keys for every sample, per-sample timeouts, documents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

verl = pytest.importorskip("verl")
torch = pytest.importorskip("torch")

from omegaconf import OmegaConf, open_dict  # noqa: E402

from llmi.engine import Engine  # noqa: E402
from llmi.rewards import METRIC_KEYS, ExtraInfo, RewardScorer, Sample  # noqa: E402
from llmi.rewards.judges import judges_from_env  # noqa: E402
from llmi.rewards.settings import close_shared  # noqa: E402

from rewards_fixtures import (  # noqa: E402,F401
    LLM_OK,
    MLLM_OK,
    Reply,
    code_tag,
    judge_server,
    tiny_tokenizer_dir,
)

ANSWERS = [
    ("Squares grow fast. " + code_tag("plt.plot([1, 4, 9])"),
     {"image_num": 1, "question": "Plot squares", "tools": ["code"], "split": "train"}),
    ("<think>plan</think>No chart needed here.", {"image_num": -1, "question": "Say hi", "tools": [], "split": "test"}),
    ("Broken row.", {"image_num": "many", "question": "q", "tools": [], "split": "train"}),
]


@pytest.fixture()
def judges_env(judge_server, monkeypatch):
    monkeypatch.setenv("LLM_JUDGE_BASE_URL", judge_server.script("verl-llm", LLM_OK))
    monkeypatch.setenv("MLLM_JUDGE_BASE_URL", judge_server.script("verl-mllm", MLLM_OK))
    yield
    close_shared()


def make_config(tokenizer_dir: Path, **reward_kwargs) -> object:
    cfg = OmegaConf.load(Path(verl.__file__).parent / "trainer/config/_generated_ppo_trainer.yaml")
    cfg.actor_rollout_ref.model.path = str(tokenizer_dir)
    cfg.reward.reward_manager.source = "importlib"
    cfg.reward.reward_manager.module.path = "pkg://llmi.rewards.verl"
    cfg.reward.reward_manager.name = "LlmiRewardManager"
    with open_dict(cfg):
        cfg.reward.reward_kwargs = reward_kwargs
    return cfg


def make_batch(tokenizer_dir: Path, rows, prompt_len: int = 6, response_len: int = 96):
    from transformers import AutoTokenizer

    from verl import DataProto

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    prompts = torch.full((len(rows), prompt_len), tok.pad_token_id)
    responses = torch.full((len(rows), response_len), tok.pad_token_id)
    mask = torch.zeros((len(rows), prompt_len + response_len), dtype=torch.long)
    for i, (answer, _) in enumerate(rows):
        ids = tok.encode(answer)[:response_len]
        responses[i, : len(ids)] = torch.tensor(ids)
        mask[i, :prompt_len] = 1
        mask[i, prompt_len : prompt_len + len(ids)] = 1
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "attention_mask": mask,
                 "input_ids": torch.cat([prompts, responses], 1)},
        non_tensors={"data_source": np.array(["interleaved"] * len(rows), dtype=object),
                     "extra_info": np.array([info for _, info in rows], dtype=object),
                     "reward_model": np.array([{"ground_truth": ""}] * len(rows), dtype=object),
                     "uid": np.array([f"u{i}" for i in range(len(rows))], dtype=object)},
    )


def run_worker(cfg, data):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(cfg)
    return worker, worker.loop.run_until_complete(worker.compute_score_batch(data))


def test_reward_loop_worker_scores_like_the_scorer(judges_env, tiny_tokenizer_dir, tmp_path):
    cfg = make_config(tiny_tokenizer_dir, document_dir=str(tmp_path / "docs"), document_every=1)
    data = make_batch(tiny_tokenizer_dir, ANSWERS)
    worker, outputs = run_worker(cfg, data)
    assert [list(o["reward_extra_info"]) for o in outputs] == [list(METRIC_KEYS)] * 3
    ok, no_image, broken = outputs
    llm, mllm = judges_from_env()
    direct = RewardScorer(Engine.from_env(), llm_judge=llm, mllm_judge=mllm)
    try:
        expected = [direct.score(Sample(a, ExtraInfo.from_mapping(i))).score for a, i in ANSWERS[:2]]
    finally:
        direct.close()
    assert ok["reward_score"] == pytest.approx(expected[0], abs=1e-9)
    assert no_image["reward_score"] == pytest.approx(expected[1], abs=1e-9)
    assert ok["reward_extra_info"]["stats/code_success"] == 1.0 and ok["reward_extra_info"]["ti_rel_score"] == 3.0
    assert no_image["reward_extra_info"]["img_quality_score"] == 0.0  # LLM-I logs 0 without images
    assert broken["reward_score"] == 0.0 and broken["reward_extra_info"]["failed"] == 1.0
    # the score lands on the last valid response token, as verl assembles it
    rm = worker.reward_manager.assemble_rm_scores(data, [o["reward_score"] for o in outputs])
    last = int(data.batch["attention_mask"][0, 6:].sum()) - 1
    assert rm[0, last].item() == pytest.approx(ok["reward_score"], rel=1e-6) and rm[0].count_nonzero() <= 1
    # documents kept for logging: in memory and on disk
    recent = {b.id: b for b in worker.reward_manager.recent}
    assert sorted(recent) == ["u0", "u1", "u2"] and len(recent["u0"].document.images) == 1
    saved = sorted((tmp_path / "docs").glob("*/reward.json"))
    assert len(saved) == 2 and all((p.parent / "index.html").exists() for p in saved)
    assert {json.loads(p.read_text())["status"] for p in saved} == {"ok"}


def test_a_hung_judge_never_freezes_a_step(judge_server, monkeypatch, tiny_tokenizer_dir):
    monkeypatch.setenv("LLM_JUDGE_BASE_URL", judge_server.script("verl-hung", Reply(LLM_OK, delay=3)))
    monkeypatch.setenv("MLLM_JUDGE_BASE_URL", judge_server.script("verl-hung-mllm", MLLM_OK))
    try:
        cfg = make_config(tiny_tokenizer_dir, sample_timeout=0.5, on_error="exclude")
        _, (out,) = run_worker(cfg, make_batch(tiny_tokenizer_dir, ANSWERS[1:2]))
    finally:
        close_shared()
    assert out["reward_score"] == 0.0 and out["reward_extra_info"]["excluded"] == 1.0
    assert list(out["reward_extra_info"]) == list(METRIC_KEYS)


def test_missing_judges_refuse_to_start(monkeypatch, tiny_tokenizer_dir):
    from llmi.errors import ConfigError

    monkeypatch.delenv("LLM_JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("MLLM_JUDGE_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="LLM_JUDGE_BASE_URL"):
        run_worker(make_config(tiny_tokenizer_dir), make_batch(tiny_tokenizer_dir, ANSWERS[1:2]))
    with pytest.raises(ConfigError, match="invalid reward settings: llm_factr"):
        run_worker(make_config(tiny_tokenizer_dir, llm_factr=1), make_batch(tiny_tokenizer_dir, ANSWERS[1:2]))


def test_compute_score_through_verls_naive_manager(judges_env, tiny_tokenizer_dir):
    cfg = make_config(tiny_tokenizer_dir)
    cfg.reward.reward_manager.source = "register"
    cfg.reward.reward_manager.name = "naive"
    cfg.reward.custom_reward_function.path = "pkg://llmi.rewards.verl"
    cfg.reward.custom_reward_function.name = "compute_score"
    with open_dict(cfg):
        cfg.reward.custom_reward_function.reward_kwargs = {"recipe": "mllmi"}
    _, outputs = run_worker(cfg, make_batch(tiny_tokenizer_dir, ANSWERS[1:]))
    assert [set(o["reward_extra_info"]) for o in outputs] == [set(METRIC_KEYS)] * 2
    llm_score = ((1.5 * 4 + 0.5 * 5) / 2 - 1) / 4
    assert outputs[0]["reward_score"] == pytest.approx(0.2 + 0.3 + 0.5 * llm_score, abs=1e-9)
    assert outputs[1]["reward_score"] == 0.0


@pytest.mark.slow
def test_reward_loop_manager_under_ray(judges_env, tiny_tokenizer_dir):
    ray = pytest.importorskip("ray")
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    cfg = make_config(tiny_tokenizer_dir)
    cfg.reward.num_workers = 2
    data = make_batch(tiny_tokenizer_dir, ANSWERS)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {
        k: v for k, v in __import__("os").environ.items() if k.startswith(("LLM_JUDGE", "MLLM_JUDGE", "PYTHONPATH", "LLMI_"))}})
    try:
        result = RewardLoopManager(cfg).compute_rm_score(data)
    finally:
        ray.shutdown()
    assert result.meta_info["reward_extra_keys"] == list(METRIC_KEYS)
    assert result.non_tensor_batch["failed"].tolist() == [0.0, 0.0, 1.0]
    assert result.batch["rm_scores"].sum(-1)[2].item() == 0.0
