"""verl recipes: one YAML file per training run on a Ray cluster, every editable value in it.

A recipe (``recipes/*.yaml``; the three shipped ones are LLM-I's) names the model, the data
files written by ``llmi data prepare``, the cluster's size, the image backbones and search
backend, the reward factors, and verl's own keys. ``plan`` turns it, with the environment,
into what a launch needs: the ``verl.trainer.main_ppo`` overrides (llmi's reward manager wired
in through verl's current ``reward.*`` keys) and the variables the workers must see.

>>> recipe = load_recipe("grpo-qwen3-4b")
>>> recipe.verl["actor_rollout_ref.actor.clip_ratio_c"], recipe.reward["llm_text_factor"]
(10.0, 1.4)
>>> p = plan(recipe, {"RAY_ADDRESS": "http://head:8265"}, base_dir=Path("/data"))
>>> [o for o in p.overrides if o.startswith(("data.train_files", "reward.reward_manager.source"))]
["data.train_files=['/data/train.parquet']", "reward.reward_manager.source='importlib'"]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError

__all__ = [
    "ENV_VARS",
    "RECIPES",
    "REWARD_MANAGER",
    "Plan",
    "Recipe",
    "hydra_override",
    "load_recipe",
    "plan",
    "recipe_text",
]

#: the shipped recipes (LLM-I's three), by name
RECIPES = ("grpo-qwen3-4b", "gspo-qwen3-30b-a3b", "grpo-qwen2.5-vl-7b")

#: llmi's verl reward manager, as verl 0.9 loads it (``reward.reward_manager.source=importlib``)
REWARD_MANAGER = {"module": "pkg://llmi.rewards.verl", "name": "LlmiRewardManager"}

#: what the cluster's workers need from the environment (LLM-I's names), and what each is for
ENV_VARS: Mapping[str, str] = {
    "RAY_ADDRESS": "the Ray cluster to submit to (its dashboard, e.g. http://head:8265)",
    "ARK_API_KEY": "Seedream and SeedEdit on Volcengine Ark (the 'seed' backbones)",
    "QWEN_IMAGE_SERVER_URL": "Qwen-Image server(s), comma-separated (diffusion backbone 'qwen')",
    "QWEN_EDIT_SERVER_URL": "Qwen-Image-Edit server(s), comma-separated (edit backbone 'qwen')",
    "SERP_API_KEY": "Google Images through SerpAPI (search 'serpapi')",
    "LLM_JUDGE_BASE_URL": "the LLM judge, an OpenAI-compatible endpoint",
    "MLLM_JUDGE_BASE_URL": "the MLLM (vision) judge, an OpenAI-compatible endpoint",
}
# Passed on to the workers when set: optional judge and tool settings.
_PASSED_ON = ("LLM_JUDGE_MODEL_NAME", "MLLM_JUDGE_MODEL_NAME", "LLM_JUDGE_API_KEY", "MLLM_JUDGE_API_KEY",
              "LLMI_IMAGES_BASE_URL", "LLMI_IMAGES_API_KEY", "WANDB_API_KEY", "HF_TOKEN")
# Keys a recipe's ``verl:`` section may not set: the recipe has a section of its own for them.
_OWNED = {
    "data.train_files": "data.train", "data.val_files": "data.test", "actor_rollout_ref.model.path": "model",
    "trainer.nnodes": "cluster.nnodes", "trainer.n_gpus_per_node": "cluster.gpus_per_node",
    "trainer.project_name": "experiment.project", "trainer.experiment_name": "experiment.name",
    "trainer.default_local_dir": "experiment.save_dir",
}
_KEY = re.compile(r"\+?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecipeData(_Strict):
    train: list[str]
    test: list[str]
    multimodal: bool = False


class Cluster(_Strict):
    nnodes: int = 1
    gpus_per_node: int = 8
    python: str = "python3"  # the interpreter a Ray job starts verl with, on the head node


class Tools(_Strict):
    diffusion_backbone: Literal["seed", "qwen"] = "seed"
    edit_backbone: Literal["seed", "qwen"] = "seed"
    search: Literal["serpapi", "wikimedia", "library"] = "serpapi"


class Experiment(_Strict):
    project: str = "LLMI"
    name: str
    save_dir: str


class Recipe(_Strict):
    """A recipe file, checked field by field (unknown keys are errors)."""

    name: str
    description: str = ""
    model: str
    data: RecipeData
    cluster: Cluster = Cluster()
    tools: Tools = Tools()
    reward: dict[str, float | str | bool] = {}
    experiment: Experiment
    verl: dict[str, Any] = {}


@dataclass(frozen=True)
class Plan:
    """A recipe made concrete: verl's overrides, and the workers' environment."""

    recipe: Recipe
    overrides: tuple[str, ...]
    env: Mapping[str, str]
    train_files: tuple[Path, ...]
    test_files: tuple[Path, ...]
    model: str
    source: str  # the recipe's name or file

    @property
    def entrypoint(self) -> str:
        """The shell command a Ray job runs."""
        import shlex

        python = shlex.quote(self.recipe.cluster.python)
        return " ".join([python, "-m verl.trainer.main_ppo", *(shlex.quote(o) for o in self.overrides)])


def recipe_text(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """The YAML text of a shipped recipe (by name) or a recipe file, and where it came from."""
    text = os.fspath(name_or_path)
    if text in RECIPES:
        return resources.files(__package__).joinpath("recipes", f"{text}.yaml").read_text(encoding="utf-8"), text
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"no recipe {text!r}: name one of {', '.join(RECIPES)} or give a recipe .yaml file")
    return path.read_text(encoding="utf-8"), str(path)


def load_recipe(name_or_path: str | os.PathLike[str]) -> Recipe:
    """A shipped recipe (``RECIPES``) or a recipe file, validated; errors say which field."""
    import yaml
    from pydantic import ValidationError

    text, source = recipe_text(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the recipe {source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the recipe {source} must be a mapping of sections (model, data, verl, ...)")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"the recipe {source} is invalid: {problems}") from None
    for key in recipe.verl:
        if not _KEY.fullmatch(key):
            raise ConfigError(f"the recipe {source}: {key!r} is not a verl key (dotted names, like data.train_batch_size)")
        if key.lstrip("+") in _OWNED:
            raise ConfigError(f"the recipe {source}: set {key} through the recipe's {_OWNED[key.lstrip('+')]} field")
    return recipe


def plan(recipe: Recipe, env: Mapping[str, str] | None = None, *, base_dir: Path | None = None,
         source: str | None = None) -> Plan:
    """The overrides and worker environment for ``recipe`` (relative data paths from ``base_dir``,
    the current folder by default). ``DIFFUSION_BACKBONE`` / ``EDIT_BACKBONE`` in ``env`` win over
    the recipe's backbones, as in LLM-I's scripts."""
    env = os.environ if env is None else env
    base = base_dir or Path.cwd()
    train = tuple(_absolute(p, base) for p in recipe.data.train)
    test = tuple(_absolute(p, base) for p in recipe.data.test)
    model = recipe.model
    local = Path(model).expanduser()
    if model.startswith((".", "/", "~")) or local.exists():
        model = str(_absolute(model, base))
    values: dict[str, Any] = {
        "data.train_files": [str(p) for p in train],
        "data.val_files": [str(p) for p in test],
        "actor_rollout_ref.model.path": model,
        "trainer.nnodes": recipe.cluster.nnodes,
        "trainer.n_gpus_per_node": recipe.cluster.gpus_per_node,
        "trainer.project_name": recipe.experiment.project,
        "trainer.experiment_name": recipe.experiment.name,
        "trainer.default_local_dir": recipe.experiment.save_dir,
        "reward.reward_manager.source": "importlib",
        "reward.reward_manager.name": REWARD_MANAGER["name"],
        "reward.reward_manager.module.path": REWARD_MANAGER["module"],
        **{f"+reward.reward_kwargs.{k}": v for k, v in recipe.reward.items()},
        **recipe.verl,
    }
    overrides = tuple(hydra_override(k, v) for k, v in values.items())
    return Plan(recipe=recipe, overrides=overrides, env=worker_env(recipe, env), train_files=train,
                test_files=test, model=model, source=source or recipe.name)


def worker_env(recipe: Recipe, env: Mapping[str, str]) -> dict[str, str]:
    """The variables every Ray worker gets: LLM-I's, the backbones and search choice, and the
    optional judge and tool settings that are set."""
    out = {name: env[name] for name in (*ENV_VARS, *_PASSED_ON) if env.get(name) and name != "RAY_ADDRESS"}
    out["DIFFUSION_BACKBONE"] = env.get("DIFFUSION_BACKBONE") or recipe.tools.diffusion_backbone
    out["EDIT_BACKBONE"] = env.get("EDIT_BACKBONE") or recipe.tools.edit_backbone
    out["LLMI_SEARCH_BACKEND"] = env.get("LLMI_SEARCH_BACKEND") or recipe.tools.search
    return out


def hydra_override(key: str, value: Any) -> str:
    """``key=value`` in Hydra's override grammar (strings quoted, lists bracketed).

    >>> hydra_override("data.train_files", ["/d/a b.parquet"]), hydra_override("x.lr", 1e-06)
    ("data.train_files=['/d/a b.parquet']", 'x.lr=1e-06')
    """
    return f"{key}={_hydra_value(value)}"


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _absolute(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()
