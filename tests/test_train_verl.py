"""`llmi train verl RECIPE --check`: LLM-I's three recipes against the installed verl, real servers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("verl")
sys.path.insert(0, str(Path(__file__).with_name("writers")))

from serve_fixtures import edit_server, gen_server, tiny_models  # noqa: E402,F401
from writer_fixtures import llama_server, smollm2_path  # noqa: E402,F401

from llmi.cli import main  # noqa: E402
from llmi.errors import ConfigError  # noqa: E402
from llmi.train.data import prepare_sync  # noqa: E402
from llmi.train.recipe import RECIPES, load_recipe, plan  # noqa: E402
from llmi.train.rows import RowRules  # noqa: E402
from llmi.train.verl import check, compose  # noqa: E402


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Path:
    """train/test parquet for the text recipes, and their _mm and dummy-image twins for the vision one."""
    folder = tmp_path_factory.mktemp("verl-data")
    Image.new("RGB", (64, 48), "green").save(folder / "photo.png")
    rows = [{"prompt": f"Tell me about topic {i}.", "image_num": 1, "tools": ["search"]} for i in range(6)]
    (folder / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mm = [{"prompt": f"Edit photo {i}.", "images": ["photo.png"], "tools": ["edit"], "image_num": 1} for i in range(4)]
    (folder / "mm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mm))
    rules = RowRules(system_prompt="S")
    prepare_sync([folder / "text.jsonl"], folder / "text", rules, test_size=2)
    prepare_sync([folder / "text.jsonl"], folder / "vision", RowRules(system_prompt="S", dummy_image=True), test_size=2)
    prepare_sync([folder / "mm.jsonl"], folder / "vision", rules, test_size=1, tag="mm")
    return folder


@pytest.fixture
def env(llama_server, gen_server, edit_server) -> dict[str, str]:
    return {
        "RAY_ADDRESS": "http://127.0.0.1:8265", "SERP_API_KEY": "key-not-used-by-the-check",
        "LLM_JUDGE_BASE_URL": llama_server, "MLLM_JUDGE_BASE_URL": llama_server,
        "QWEN_IMAGE_SERVER_URL": gen_server.url, "QWEN_EDIT_SERVER_URL": edit_server.url,
        "DIFFUSION_BACKBONE": "qwen", "EDIT_BACKBONE": "qwen",
    }


def folder_for(name: str, datasets: Path) -> Path:
    return datasets / ("vision" if "vl" in name else "text")


@pytest.mark.parametrize("name", RECIPES)
def test_check_passes_for_each_llmi_recipe(name, datasets, env) -> None:
    the_plan = plan(load_recipe(name), env, base_dir=folder_for(name, datasets))
    report = check(the_plan, env)
    assert report.ok, [c for c in report.checks if c.status == "failed"]
    names = {c.name for c in report.checks if c.status == "ok"}
    assert {"verl configuration", "reward manager", "LLM_JUDGE_BASE_URL judge", "QWEN_IMAGE_SERVER_URL servers",
            "QWEN_EDIT_SERVER_URL servers", "$RAY_ADDRESS"} <= names
    cfg = report.config
    assert cfg.reward.reward_manager.source == "importlib"
    assert cfg.reward.reward_manager.module.path == "pkg://llmi.rewards.verl"
    assert cfg.trainer.nnodes == 2 and cfg.trainer.n_gpus_per_node == 8
    assert list(cfg.data.train_files) == [str(p) for p in the_plan.train_files]
    assert the_plan.env["DIFFUSION_BACKBONE"] == "qwen" and the_plan.env["QWEN_IMAGE_SERVER_URL"] == gen_server_url(env)
    assert "RAY_ADDRESS" not in the_plan.env


def gen_server_url(env) -> str:
    return env["QWEN_IMAGE_SERVER_URL"]


def test_recipes_carry_llmi_hyper_parameters() -> None:
    def composed(name):
        return compose(plan(load_recipe(name), {}, base_dir=Path("/data")))

    grpo = composed("grpo-qwen3-4b")
    actor = grpo.actor_rollout_ref.actor
    assert (grpo.algorithm.adv_estimator, actor.clip_ratio_c, actor.loss_agg_mode) == ("grpo", 10.0, "token-mean")
    assert (actor.optim.lr, actor.optim.lr_warmup_steps, actor.optim.lr_scheduler_type, actor.optim.min_lr_ratio,
            actor.optim.weight_decay, actor.optim.clip_grad) == (1e-6, 5, "cosine", 0.01, 0.1, 1.0)
    assert (actor.use_kl_loss, grpo.algorithm.use_kl_in_reward) == (False, False)
    assert (grpo.data.train_batch_size, grpo.actor_rollout_ref.rollout.n, actor.ppo_mini_batch_size) == (32, 8, 32)
    assert (grpo.data.max_prompt_length, grpo.data.max_response_length) == (8192, 24576)
    assert grpo.actor_rollout_ref.rollout.val_kwargs.do_sample is False
    assert grpo.reward.reward_kwargs.llm_text_factor == 1.4 and grpo.reward.reward_kwargs.img_num_factor == 0.2

    gspo = composed("gspo-qwen3-30b-a3b").actor_rollout_ref.actor
    assert (gspo.policy_loss.loss_mode, gspo.clip_ratio_low, gspo.clip_ratio_high, gspo.loss_agg_mode) == (
        "gspo", 3e-4, 4e-4, "seq-mean-token-mean")
    vl = composed("grpo-qwen2.5-vl-7b")
    assert (vl.data.max_prompt_length, vl.data.max_response_length) == (16384, 16384)
    assert [Path(p).name for p in vl.data.train_files] == ["train.parquet", "train_mm.parquet"]
    assert (vl.reward.reward_kwargs.llm_text_factor, vl.reward.reward_kwargs.llm_image_factor) == (1.5, 0.5)


@pytest.mark.parametrize("key, value, message", [
    ("actor_rollout_ref.actor.clip_ration_c", 10.0, "Could not override 'actor_rollout_ref.actor.clip_ration_c'"),
    ("+trainer.log_train_generations", 8, "verl would never read it"),
    ("custom_reward_function.path", "/x.py", "legacy key that verl.trainer.main_ppo ignores"),
    ("reward_model.reward_manager", "llmi", "legacy key"),
    ("actor_rollout_ref.actor.optim.warmup_style", "cosine", "deprecated"),
    ("data.train_batch_size", 16, r"train_batch_size \(16\) must be >= actor.ppo_mini_batch_size"),
    ("actor_rollout_ref.actor.loss_agg_mode", "bogus", "FSDPActorConfig.*bogus"),
])
def test_unknown_ignored_deprecated_and_invalid_keys_fail(tmp_path, key, value, message) -> None:
    recipe = load_recipe("grpo-qwen3-4b")
    recipe = recipe.model_copy(update={"verl": {**recipe.verl, key: value}})
    with pytest.raises(ConfigError, match=message):
        compose(plan(recipe, {}, base_dir=tmp_path))


def test_recipe_file_errors_name_the_field(tmp_path) -> None:
    from llmi.train.recipe import recipe_text

    text, _ = recipe_text("grpo-qwen3-4b")
    cases = {
        "backbone": (text.replace("diffusion_backbone: seed", "diffusion_backbone: dalle"), "tools.diffusion_backbone"),
        "section": (text + "\nextras: {a: 1}\n", "extras"),
        "owned": (text.replace("  data.shuffle: true", "  data.train_files: [x.parquet]"), "through the recipe's data.train"),
        "yaml": ("model: [unclosed", "not valid YAML"),
    }
    for name, (body, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(body)
        with pytest.raises(ConfigError, match=message):
            load_recipe(path)
    with pytest.raises(ConfigError, match="name one of grpo-qwen3-4b"):
        load_recipe("grpo-llama")


def test_paths_with_spaces_and_quotes_survive_the_override_grammar(tmp_path) -> None:
    odd = tmp_path / "it's a dir"
    recipe = load_recipe("grpo-qwen3-4b")
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"train": [str(odd / "train.parquet")]})})
    cfg = compose(plan(recipe, {}, base_dir=tmp_path))
    assert list(cfg.data.train_files) == [str(odd / "train.parquet")]


def test_check_reports_missing_data_variables_and_dead_servers(tmp_path) -> None:
    env = {"LLM_JUDGE_BASE_URL": "http://127.0.0.1:9/v1", "DIFFUSION_BACKBONE": "qwen",
           "QWEN_IMAGE_SERVER_URL": "http://127.0.0.1:9"}
    report = check(plan(load_recipe("grpo-qwen3-4b"), env, base_dir=tmp_path), env, timeout=2)
    failed = {c.name: c.detail for c in report.failures}
    assert "does not exist" in failed["data train.parquet"]
    assert {"$RAY_ADDRESS", "$MLLM_JUDGE_BASE_URL", "$ARK_API_KEY", "$SERP_API_KEY"} <= set(failed)
    assert "ConnectError" in failed["LLM_JUDGE_BASE_URL judge"]
    assert "not ready" in failed["QWEN_IMAGE_SERVER_URL servers"]
    assert not report.ok


def test_text_recipe_refuses_image_rows_and_vision_recipe_wants_the_dummy_image(datasets) -> None:
    text_on_images = plan(load_recipe("grpo-qwen3-4b"), {}, base_dir=datasets / "vision")
    failed = {c.name: c.detail for c in check(text_on_images, {}, servers=False).failures}
    assert "trains a text model" in failed["data train.parquet"]
    vision_on_text = plan(load_recipe("grpo-qwen2.5-vl-7b"), {}, base_dir=datasets / "text")
    failed = {c.name: c.detail for c in check(vision_on_text, {}, servers=False).failures}
    assert "--dummy-image" in failed["data train.parquet"]


def test_cli_export_then_check(tmp_path, datasets, env, monkeypatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(datasets / "text")
    runner = CliRunner()
    mine = tmp_path / "mine.yaml"
    result = runner.invoke(main, ["train", "verl", "grpo-qwen3-4b", "--export", str(mine)])
    assert result.exit_code == 0 and mine.read_text().startswith("# LLM-I's main recipe")
    mine.write_text(mine.read_text().replace("nnodes: 2", "nnodes: 4"))
    result = runner.invoke(main, ["train", "verl", str(mine), "--check", "--print-config"])
    assert result.exit_code == 0, result.output
    assert "ready to submit" in result.output and "nnodes: 4" in result.output
    monkeypatch.delenv("LLM_JUDGE_BASE_URL")
    result = runner.invoke(main, ["train", "verl", str(mine), "--check"])
    assert result.exit_code == 1 and "nothing was submitted" in result.output


def score_dataproto(datasets: Path, reward: dict | None = None) -> list[dict]:
    """verl's own reward-loop worker, with the configuration composed from LLM-I's recipe (its
    ``reward`` section replaced by ``reward`` if given), runs llmi's manager over a CPU DataProto."""
    import numpy as np
    import torch
    from verl import DataProto
    from verl.experimental.reward_loop import RewardLoopWorker

    from llmi.train.model import trainable_model

    recipe = load_recipe("grpo-qwen3-4b").model_copy(update={"model": trainable_model()})
    if reward is not None:
        recipe = recipe.model_copy(update={"reward": reward})
    config = compose(plan(recipe, {}, base_dir=datasets / "text"))
    worker = RewardLoopWorker(config)
    tokenizer = worker.input_tokenizer
    answers = [
        "Rain by month.\n<imgen>{'source': 'code', 'description': 'Rain', 'params': {'code': 'plt.bar([1, 2, 3], [3, 5, 2])'}}</imgen>",
        "No picture at all.",
        "<imgen>{'source': 'painting', 'description': 'x', 'params': {}}</imgen>",
    ]
    prompt = tokenizer("Question?", return_tensors="pt")["input_ids"][0]
    responses = [tokenizer(a + tokenizer.eos_token, return_tensors="pt")["input_ids"][0] for a in answers]
    width = max(len(r) for r in responses)
    resp = torch.full((len(answers), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(answers), len(prompt) + width), dtype=torch.long)
    for i, r in enumerate(responses):
        resp[i, : len(r)] = r
        mask[i, : len(prompt) + len(r)] = 1
    info = {"image_num": 1, "tools": ["code"], "question": "Show the rain by month.", "split": "train"}
    data = DataProto.from_dict(
        tensors={"prompts": prompt.repeat(len(answers), 1), "responses": resp, "attention_mask": mask,
                 "input_ids": torch.cat([prompt.repeat(len(answers), 1), resp], dim=1)},
        non_tensors={"data_source": np.array(["interleaved"] * len(answers), dtype=object),
                     "extra_info": np.array([dict(info) for _ in answers], dtype=object),
                     "reward_model": np.array([{"ground_truth": "", "style": "rule"}] * len(answers), dtype=object),
                     "uid": np.array(["a", "a", "a"], dtype=object)},
    )
    return worker.loop.run_until_complete(worker.compute_score_batch(data))


def check_scores(results: list[dict]) -> None:
    keys = [sorted(r["reward_extra_info"]) for r in results]
    assert keys[0] == keys[1] == keys[2]  # verl takes the keys from the first sample
    chart, prose, broken = (r["reward_extra_info"] for r in results)
    assert chart["img_num_score"] == 1.0 and chart["stats/code_success"] == 1
    assert prose["img_num_score"] == 0.0 and broken["img_num_score"] == 0.0
    assert all(0.0 <= r["reward_score"] <= 1.0 for r in results)


def test_the_ray_entrypoint_quotes_every_value_for_the_shell(tmp_path) -> None:
    import shlex

    hostile = str(tmp_path / "$(touch pwned); `id` 'x'.parquet")
    recipe = load_recipe("grpo-qwen3-4b")
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"train": [hostile]})})
    the_plan = plan(recipe, {}, base_dir=tmp_path)
    words = shlex.split(the_plan.entrypoint)
    assert words[:3] == ["python3", "-m", "verl.trainer.main_ppo"] and words[3:] == list(the_plan.overrides)
    cfg = compose(the_plan)
    assert list(cfg.data.train_files) == [hostile]


def test_the_recipe_reward_manager_scores_a_dataproto_batch(datasets, monkeypatch) -> None:
    """Tools for real (a chart in the sandbox); the judges' factors set to 0 to keep it quick."""
    monkeypatch.setenv("LLMI_SEARCH_BACKEND", "none")
    results = score_dataproto(datasets, {"profile": "llmi-compat", "llm_factor": 0.0, "mllm_factor": 0.0,
                                         "require_judges": False})
    check_scores(results)
    assert [round(r["reward_score"], 6) for r in results] == [0.2, 0.0, 0.0]  # R = 0.2 n


@pytest.mark.slow
def test_the_recipe_reward_manager_with_real_judges(datasets, llama_server, monkeypatch) -> None:
    for var in ("LLM_JUDGE_BASE_URL", "MLLM_JUDGE_BASE_URL"):
        monkeypatch.setenv(var, llama_server)
    monkeypatch.setenv("LLMI_SEARCH_BACKEND", "none")
    check_scores(score_dataproto(datasets))
