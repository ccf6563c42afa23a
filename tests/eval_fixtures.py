"""Fixtures for the evaluation tests: the shared OpenING data, the real llama.cpp server of the
writer tests (a real local judge), latency-controlled chat servers, and a recording judge."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

sys.path.insert(0, str(Path(__file__).with_name("writers")))
from writer_fixtures import llama_server, smollm2_path  # noqa: E402,F401 - the real llama.cpp server

from llmi.evaluate.judging import JudgeAnswer, reply_object  # noqa: E402


def find_shared(relative: str) -> Path | None:
    """``shared/<relative>`` beside the checkout (or above it: worktrees sit one level deeper)."""
    env = os.environ.get("LLMI_SHARED_DATA")
    if env and (Path(env) / relative).exists():
        return Path(env) / relative
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / relative
        if candidate.exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def opening_data() -> Path:
    found = find_shared("data/opening")
    if found is None:
        pytest.skip("the shared OpenING data (shared/data/opening) is not beside this checkout")
    return found


@dataclass
class ScriptedJudge:
    """A ``BenchJudge`` in-process: ``reply(system, user, schema)`` gives the reply text (or
    raises); every call is recorded. For the logic around judges; real judges are tested over HTTP."""

    reply: Any
    images: bool = True
    name: str = "scripted"
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def ask(self, system: str, user: Any, *, schema: Mapping[str, Any], seed: int | None = None) -> JudgeAnswer:
        self.calls.append({"system": system, "user": user, "schema": schema, "seed": seed})
        text = self.reply(system, user, schema)
        return JudgeAnswer(reply_object(text), text, 0.0)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "images": self.images}

    async def aclose(self) -> None:
        return None


def rubric_reply(score: int = 2, why: str = "fine") -> str:
    return json.dumps({"score": score, "justification": why})


def wait_for(predicate, timeout: float = 60.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


@pytest.fixture
def chat_server() -> Iterator[Any]:
    """A factory of latency-controlled chat servers, closed after the test."""
    from llmi.testing import LatencyChatServer

    servers: list[LatencyChatServer] = []

    def make(latency: float = 0.0, respond=None) -> LatencyChatServer:
        server = LatencyChatServer(latency, respond=respond).__enter__()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.__exit__(None, None, None)
