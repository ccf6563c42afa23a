"""``llmi train verl RECIPE``: check a recipe against the installed verl, then submit it to Ray.

``check`` runs every check a user would otherwise discover an hour into a cluster job:

1. **data**: every file exists and every row is valid (``llmi.train.data``), text recipes get
   no image rows and the vision recipe's text rows carry LLM-I's dummy image;
2. **model**: a local model folder has its ``config.json`` (a hub id is left to the cluster);
3. **environment**: the variables the backbones, search and judges need are set;
4. **servers**: the judges answer ``GET /models`` and every Qwen image server is ready;
5. **reward settings**: the recipe's ``reward`` section, read as the reward manager reads it;
6. **configuration**: verl's own trainer config (``ppo_trainer.yaml``) composed with Hydra
   and the recipe's overrides — an unknown key fails; legacy keys ``main_ppo`` ignores, keys
   added with ``+`` that verl never reads, and deprecated keys fail too — then verl's own
   ``validate_config`` and its dataclass configs;
7. **reward manager**: llmi's manager loads the way verl's reward workers load it.

``submit`` checks first, then hands ``python3 -m verl.trainer.main_ppo <overrides>`` to the Ray
cluster at ``RAY_ADDRESS`` with the workers' environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from ..errors import ConfigError, LlmiError, MissingDependency
from .recipe import ENV_VARS, Plan

__all__ = ["Check", "CheckReport", "check", "compose", "submit"]

# Keys added with "+" that verl reads although its schema does not list them.
_READ_EXTRA = ("+reward.reward_kwargs.", "+reward.custom_reward_function.reward_kwargs.")
# Top-level sections main_ppo still accepts but never reads (verl 0.9 moved them under reward.*).
_LEGACY = ("custom_reward_function", "reward_model", "sandbox_fusion")
# The sub-configs main_ppo turns into verl's dataclasses (the model's needs the weights: skipped).
_DATACLASSES = ("algorithm", "actor_rollout_ref.actor", "actor_rollout_ref.rollout", "critic")


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["ok", "failed", "skipped"]
    detail: str = ""


@dataclass(frozen=True)
class CheckReport:
    plan: Plan
    checks: tuple[Check, ...]
    config: Any = None  # the composed DictConfig, when composition worked

    @property
    def ok(self) -> bool:
        return all(c.status != "failed" for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "failed")


def check(plan: Plan, env: Mapping[str, str] | None = None, *, timeout: float = 10.0,
          servers: bool = True) -> CheckReport:
    """Every check of the module docstring; ``servers=False`` skips contacting judges and servers."""
    env = os.environ if env is None else env
    checks: list[Check] = []
    checks += _check_data(plan)
    checks.append(_check_model(plan))
    checks += _check_env(plan, env)
    if servers:
        checks += asyncio.run(_check_servers(plan, env, timeout))
    checks.append(_check_reward(plan))
    config = None
    try:
        config = compose(plan)
        checks.append(Check("verl configuration", "ok", f"{len(plan.overrides)} overrides composed with verl's ppo_trainer"))
    except ConfigError as exc:
        checks.append(Check("verl configuration", "failed", str(exc)))
    checks.append(_check_manager(config))
    return CheckReport(plan=plan, checks=tuple(checks), config=config)


# -- 1-3: inputs --------------------------------------------------------------------------------


def _check_data(plan: Plan) -> list[Check]:
    from .data import summarise

    out = []
    multimodal = plan.recipe.data.multimodal
    for role, files in (("train", plan.train_files), ("test", plan.test_files)):
        if not files:
            out.append(Check(f"data ({role})", "failed", f"the recipe names no {role} file"))
        for path in files:
            name = f"data {path.name}"
            if not path.is_file():
                out.append(Check(name, "failed", f"{path} does not exist; write it with `llmi data prepare`"))
                continue
            try:
                summary = summarise(path, first=0)
            except LlmiError as exc:
                out.append(Check(name, "failed", str(exc)))
                continue
            problem = _data_problem(summary, multimodal)
            if problem:
                out.append(Check(name, "failed", problem))
            else:
                modality = ", ".join(f"{n} {m}" for m, n in summary.by_modality.items())
                out.append(Check(name, "ok", f"{summary.rows} rows ({modality})"))
    return out


def _data_problem(summary: Any, multimodal: bool) -> str:
    if summary.errors:
        more = f" (and {len(summary.errors) - 1} more)" if len(summary.errors) > 1 else ""
        return f"{summary.errors[0]}{more}; check it with `llmi data inspect`"
    if not summary.rows:
        return "the file has no rows"
    image_rows = sum(n for k, n in summary.by_input_images.items() if k) - summary.dummy_images
    if not multimodal and (image_rows or summary.dummy_images):
        return (f"{image_rows + summary.dummy_images} rows have input images but this recipe trains a text "
                "model; use the vision recipe (grpo-qwen2.5-vl-7b) or drop those rows")
    text_rows = summary.by_modality.get("text", 0)
    if multimodal and text_rows > summary.dummy_images:
        return (f"{text_rows - summary.dummy_images} text rows lack LLM-I's dummy input image; prepare them "
                "with `llmi data prepare --dummy-image` so text and image rows number their images alike")
    return ""


def _check_model(plan: Plan) -> Check:
    path = Path(plan.model)
    if path.is_absolute():
        if (path / "config.json").is_file():
            return Check("model", "ok", str(path))
        return Check("model", "failed", f"{path} is not a Hugging Face model folder (no config.json)")
    return Check("model", "skipped", f"{plan.model} is a hub id: the cluster downloads it")


def _check_env(plan: Plan, env: Mapping[str, str]) -> list[Check]:
    from ..tools.images.routing import diffusion_choice, edit_choice
    from ..tools.search.routing import search_choice

    needed = ["RAY_ADDRESS", "LLM_JUDGE_BASE_URL", "MLLM_JUDGE_BASE_URL"]
    needed.append("ARK_API_KEY" if "seed" in (plan.env["DIFFUSION_BACKBONE"], plan.env["EDIT_BACKBONE"]) else "")
    needed.append("QWEN_IMAGE_SERVER_URL" if plan.env["DIFFUSION_BACKBONE"] == "qwen" else "")
    needed.append("QWEN_EDIT_SERVER_URL" if plan.env["EDIT_BACKBONE"] == "qwen" else "")
    needed.append("SERP_API_KEY" if plan.env["LLMI_SEARCH_BACKEND"] == "serpapi" else "")
    out = []
    for name in filter(None, needed):
        if env.get(name, "").strip():
            out.append(Check(f"${name}", "ok", ENV_VARS[name]))
        else:
            out.append(Check(f"${name}", "failed", f"not set: {ENV_VARS[name]}"))
    # What the workers' tools will pick from that environment (the engine's own routing).
    for tool, choose in (("diffusion", diffusion_choice), ("edit", edit_choice), ("search", search_choice)):
        try:
            choice = choose(plan.env)
            out.append(Check(f"{tool} backend", "ok" if choice.backend else "failed", f"{choice.backend}: {choice.reason}"))
        except ConfigError as exc:
            out.append(Check(f"{tool} backend", "failed", str(exc)))
    return out


def _check_reward(plan: Plan) -> Check:
    """The recipe's reward section, read as the reward manager will read it."""
    from ..rewards.settings import RewardSettings

    try:
        settings = RewardSettings.parse(plan.recipe.reward)
    except ConfigError as exc:
        return Check("reward settings", "failed", str(exc))
    f = settings.factors()
    return Check("reward settings", "ok", f"{settings.profile}, {settings.recipe} factors: llm {f.llm_factor}, "
                 f"mllm {f.mllm_factor}, img_num {f.img_num_factor}, text/image {f.llm_text_factor}/{f.llm_image_factor}")


# -- 4: servers ---------------------------------------------------------------------------------


async def _check_servers(plan: Plan, env: Mapping[str, str], timeout: float) -> list[Check]:
    from ..serve.client import ImageServerClient

    jobs = []
    for var in ("LLM_JUDGE_BASE_URL", "MLLM_JUDGE_BASE_URL"):
        if env.get(var):
            key = env.get(var.replace("BASE_URL", "API_KEY"))
            jobs.append(_judge_answers(var, env[var], key, timeout))
    checks: list[Check] = list(await asyncio.gather(*jobs))
    for var, backbone in (("QWEN_IMAGE_SERVER_URL", "DIFFUSION_BACKBONE"), ("QWEN_EDIT_SERVER_URL", "EDIT_BACKBONE")):
        if plan.env.get(backbone) != "qwen" or not env.get(var):
            continue
        client = ImageServerClient(env[var])
        try:
            statuses = await client.health(timeout=timeout)
        finally:
            await client.aclose()
        down = [f"{s.url} ({s.detail or 'not ready'})" for s in statuses if not s.ready]
        checks.append(Check(f"{var} servers", "failed" if down else "ok",
                            f"not ready: {', '.join(down)}" if down else f"{len(statuses)} ready"))
    return checks


async def _judge_answers(var: str, base_url: str, api_key: str | None, timeout: float) -> Check:
    """An OpenAI-compatible endpoint answers ``GET /models`` with at least one model."""
    import httpx

    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as http:
            response = await http.get(url, headers=headers)
        response.raise_for_status()
        models = [m.get("id") for m in response.json().get("data", []) if isinstance(m, dict)]
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return Check(f"{var} judge", "failed", f"{url}: {type(exc).__name__}: {exc}")
    if not models:
        return Check(f"{var} judge", "failed", f"{url} lists no model")
    return Check(f"{var} judge", "ok", f"answers; serves {', '.join(map(str, models[:3]))}")


# -- 5-6: verl ----------------------------------------------------------------------------------


def compose(plan: Plan) -> Any:
    """verl's full trainer configuration for ``plan``, composed by Hydra from verl's own YAML
    and checked (see the module docstring); raises ``ConfigError`` saying which key is wrong."""
    try:
        import verl.trainer.config as verl_config
        from hydra import compose as hydra_compose
        from hydra import initialize_config_dir
        from hydra.errors import HydraException
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException
    except ImportError:
        raise MissingDependency("verl", "train") from None

    for override in plan.overrides:
        if override.startswith("+") and not override.startswith(_READ_EXTRA):
            raise ConfigError(f"{override.split('=')[0]} is not a key of verl's trainer config and verl would "
                              "never read it; check its spelling against `llmi train verl RECIPE --print-config`")
    folder = str(Path(verl_config.__file__).parent)
    try:
        with initialize_config_dir(config_dir=folder, version_base=None):
            config = hydra_compose("ppo_trainer", overrides=list(plan.overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"verl does not accept the recipe: {_first_line(exc)}") from None
    for section in _LEGACY:
        node = OmegaConf.select(config, section)
        used = [k for k, v in _leaves(OmegaConf.to_container(node)) if v is not None] if node is not None else []
        if used:
            raise ConfigError(f"{section}.{used[0]} is a legacy key that verl.trainer.main_ppo ignores; "
                              "use the reward.* keys")
    _verl_validate(config)
    return config


def _verl_validate(config: Any) -> None:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    # verl prints a success line of its own; the check's table says it instead.
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        try:
            validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
            for key in _DATACLASSES:
                node = OmegaConf.select(config, key)
                if node is not None and "_target_" in node and (key != "critic" or need_critic(config)):
                    omega_conf_to_dataclass(node)
        except (AssertionError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"verl rejects the configuration: {_first_line(exc) or type(exc).__name__}") from None
        except Exception as exc:  # Hydra's InstantiationException wraps a dataclass's own error
            raise ConfigError(f"verl rejects the configuration: {_first_line(exc)}") from None
    deprecated = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    if deprecated:
        raise ConfigError(f"the recipe uses a deprecated verl key: {deprecated[0]}")


def _check_manager(config: Any) -> Check:
    if config is None:
        return Check("reward manager", "skipped", "needs a composed configuration")
    try:
        from verl.trainer.ppo.reward import resolve_reward_manager_cls

        cls = resolve_reward_manager_cls(config)
    except Exception as exc:  # verl's loader raises ImportError, AttributeError, FileNotFoundError ...
        return Check("reward manager", "failed", f"{type(exc).__name__}: {_first_line(exc)}")
    return Check("reward manager", "ok", f"{cls.__module__}.{cls.__name__}")


# -- submission ---------------------------------------------------------------------------------


def submit(plan: Plan, address: str, *, extra_args: Sequence[str] = (), job_id: str | None = None) -> str:
    """Submit the recipe's training job to the Ray cluster at ``address``; returns the job id.

    ``extra_args`` are appended to verl's command line (``--cfg job`` prints the configuration
    the cluster composed and exits: a dry run on the cluster itself).
    """
    import shlex

    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise MissingDependency("ray", "train") from None
    entrypoint = " ".join([plan.entrypoint, *(shlex.quote(a) for a in extra_args)])
    try:
        client = JobSubmissionClient(address)
        return client.submit_job(entrypoint=entrypoint, runtime_env={"env_vars": dict(plan.env)},
                                 submission_id=job_id, metadata={"llmi_recipe": plan.source})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"could not submit to the Ray cluster at {address}: {_first_line(exc)}") from None


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), tree)]


def _first_line(exc: BaseException) -> str:
    """The first line of an error, and of its cause (Hydra wraps a dataclass's own message)."""
    def first(e: BaseException) -> str:
        return next((line.strip() for line in str(e).splitlines() if line.strip()), "")

    cause = exc.__cause__ or exc.__context__
    return f"{first(exc)} {first(cause)}" if cause is not None and first(cause) else first(exc)
