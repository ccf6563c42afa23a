"""One chooser over the registry: every family is picked the same way, every backend says for
itself what configures it and how it is built from the environment."""

from __future__ import annotations

import pytest

from llmi.errors import ConfigError
from llmi.tools import BACKENDS, Backend, default_tools, load_backend
from llmi.tools.routing import FAMILIES, Choice, choose, from_env

# an environment that configures every backend (nothing is fetched: backends build lazily)
EVERYTHING = {
    "SERP_API_KEY": "serp", "ARK_API_KEY": "ark", "OPENAI_API_KEY": "sk",
    "QWEN_IMAGE_SERVER_URL": "http://127.0.0.1:1", "QWEN_EDIT_SERVER_URL": "http://127.0.0.1:2",
}


@pytest.mark.parametrize(("source", "name"), [(s, n) for s in FAMILIES for n in BACKENDS[s]])
def test_every_routed_backend_is_a_backend(source: str, name: str, tmp_path) -> None:
    cls = load_backend(source, name)
    assert callable(cls.configured) and callable(cls.from_env)
    env = {**EVERYTHING, "LLMI_HOME": str(tmp_path)}
    if name == "library":  # an empty library is not configured (an indexed one: tests/test_library.py)
        assert cls.configured(env) is None
        with pytest.raises(ConfigError, match="llmi library add"):
            cls.from_env(env)
        return
    tool = cls.from_env(env)
    assert isinstance(tool, Backend) and (tool.source, tool.backend) == (source, name)


def test_every_priority_names_a_registered_backend() -> None:
    for source, family in FAMILIES.items():
        assert set(family.priority) <= set(BACKENDS[source])
        assert set(family.aliases.values()) <= set(BACKENDS[source])


@pytest.mark.parametrize(
    ("source", "env", "backend"),
    [
        ("search", {}, None),
        ("search", {"LLMI_ONLINE": "0"}, None),
        ("search", {"LLMI_ONLINE": "yes"}, "wikimedia"),  # opt-in: never probed
        ("search", {"LLMI_ONLINE": "1", "SERP_API_KEY": "k"}, "serpapi"),  # priority
        ("search", {"LLMI_SEARCH_BACKEND": "WIKIMEDIA"}, "wikimedia"),  # named: no opt-in needed
        ("diffusion", {**EVERYTHING}, "qwen"),
        ("diffusion", {**EVERYTHING, "QWEN_IMAGE_SERVER_URL": "  "}, "seedream"),  # blank is unset
        ("diffusion", {**EVERYTHING, "LLMI_DIFFUSION_BACKEND": "seed"}, "seedream"),  # alias
        ("diffusion", {**EVERYTHING, "LLMI_DIFFUSION_BACKEND": "auto", "DIFFUSION_BACKBONE": "seed"}, "seedream"),
        ("edit", {**EVERYTHING, "LLMI_EDIT_BACKEND": "offline"}, "classical"),
        ("edit", {**EVERYTHING, "LLMI_EDIT_BACKEND": "off"}, None),
    ],
)
def test_choose(source: str, env: dict, backend: str | None, tmp_path) -> None:
    choice = choose(source, {"LLMI_HOME": str(tmp_path), **env})
    assert isinstance(choice, Choice) and choice.backend == backend and choice.reason


def test_bad_settings_are_config_errors_naming_the_variable(tmp_path) -> None:
    with pytest.raises(ConfigError, match="LLMI_SEARCH_BACKEND='bing' is not one of the search backends"):
        choose("search", {"LLMI_SEARCH_BACKEND": "bing"})
    with pytest.raises(ConfigError, match="LLMI_ONLINE='maybe'"):
        choose("search", {"LLMI_ONLINE": "maybe", "LLMI_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="DIFFUSION_BACKBONE"):
        choose("diffusion", {"DIFFUSION_BACKBONE": "dalle"})
    with pytest.raises(ConfigError, match="LLMI_QWEN_IMAGE_STEPS='many' is not an integer"):
        from_env("diffusion", {"QWEN_IMAGE_SERVER_URL": "http://h:1", "LLMI_QWEN_IMAGE_STEPS": "many"})
    with pytest.raises(ConfigError, match="LLMI_ARK_WATERMARK"):
        from_env("diffusion", {"ARK_API_KEY": "k", "LLMI_ARK_WATERMARK": "perhaps"})


def test_default_tools_builds_each_family_through_the_chooser(tmp_path) -> None:
    tools = default_tools({"LLMI_HOME": str(tmp_path)})
    assert sorted(tools) == ["code", "edit"] and tools["edit"].backend == "classical"
    tools = default_tools({**EVERYTHING, "LLMI_HOME": str(tmp_path)})
    assert {s: t.backend for s, t in tools.items()} == {
        "code": "sandbox", "search": "serpapi", "diffusion": "qwen", "edit": "qwen",
    }
