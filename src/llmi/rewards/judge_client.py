"""One call to a judge model behind any OpenAI-compatible chat endpoint (vLLM, SGLang,
llama.cpp, OpenAI), with the reply constrained, limited, timed out and retried.

``JudgeClient.complete(messages, reply=fmt)`` sends the chat messages and returns a
``JudgeReply``: the raw text, the model, how the output was constrained, the time it took and
the attempts it needed. The LLM judge, the MLLM judge and the evaluation judges all go through
it, each with its own ``ReplyFormat``.

Structured output (``structured="auto"``) asks for the reply's JSON schema with
``response_format: json_schema``; a server that refuses that field (llama-cpp-python's server
does) is asked next with ``json_object`` + schema, then with a GBNF ``grammar``, then with
nothing. What worked is remembered for the endpoint. The same goes for optional body fields a
server refuses (``seed``, the thinking switches): they are dropped and remembered, instead of
failing every call.

Only transient errors are retried (connection failures, timeouts, 408, 425, 429 and 5xx,
honouring ``Retry-After``); everything else is one ``JudgeError`` whose message says what to
change.

>>> client = JudgeClient("http://127.0.0.1:8000/v1", model="judge")
>>> client.name
'judge'
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

from .. import http
from ..errors import ConfigError, JudgeError
from ..http import Retry
from .limits import Gate, JudgeLimits, RateLimiter
from .replies import ReplyFormat

__all__ = ["JudgeClient", "JudgeReply", "JudgeSampling", "STRUCTURED_MODES"]

#: ways of constraining a reply, in the order ``auto`` tries them
STRUCTURED_MODES = ("json_schema", "json_object", "grammar", "off")
_MAX_BODY = 4 * 1024 * 1024
# words in a 400/422 body that say the server refused the structured-output request itself
_STRUCTURE_WORDS = ("response_format", "json_schema", "json_object", "schema", "grammar", "guided", "structured")
_IMAGE_TOKENS = 1000  # a rough cost of one image for the tokens-per-minute limit


@dataclass(frozen=True)
class JudgeSampling:
    """Sampling for one judge call. ``None`` leaves a setting to the server.

    ``extra_body`` is merged into the request (for example ``{"chat_template_kwargs":
    {"enable_thinking": False}}``); fields the server refuses are dropped (and remembered).
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    top_logprobs: int | None = None  # ask for each reply token's most likely alternatives


@dataclass(frozen=True)
class JudgeReply:
    """A judge's answer: its raw ``text`` and how it was obtained."""

    text: str
    model: str
    structured: str  # the mode the server accepted: json_schema, json_object, grammar or off
    latency: float  # seconds from the first attempt to the answer, waits included
    attempts: int
    usage: Mapping[str, int] = field(default_factory=dict)
    finish_reason: str | None = None
    #: with ``JudgeSampling.top_logprobs``, where the server gives them: each reply token and
    #: its alternatives' log-probabilities (the token itself among them)
    logprobs: tuple[tuple[str, Mapping[str, float]], ...] = ()


@dataclass
class _LoopState:
    pools: http.Pools
    model_lock: asyncio.Lock


class JudgeClient:
    """A judge endpoint: ``base_url`` (ending in ``/v1``), ``model`` (``None``: the one model
    ``GET /models`` lists), ``api_key``, ``limits`` and ``structured`` (``auto`` or one of
    ``STRUCTURED_MODES``). ``label`` names it in messages (``LLM judge``).

    Limits hold across every event loop and thread that uses the client.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        limits: JudgeLimits | None = None,
        structured: Literal["auto", "json_schema", "json_object", "grammar", "off"] = "auto",
        label: str = "judge",
        env_prefix: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"the {label} base URL must start with http:// or https://, got {base_url!r}")
        if structured != "auto" and structured not in STRUCTURED_MODES:
            raise ConfigError(f"structured must be 'auto' or one of {', '.join(STRUCTURED_MODES)}, not {structured!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model or None
        self.api_key = api_key
        self.limits = limits or JudgeLimits()
        self.label = label
        self.env_prefix = env_prefix
        self._modes = list(STRUCTURED_MODES if structured == "auto" else (structured,))
        self._refused: set[str] = set()  # optional body fields this server refuses
        self._headers = dict(headers or {})
        where = f" ({env_prefix}_BASE_URL)" if env_prefix else ""
        self._service = http.Service(
            f"the {label}{where}", key_hint=f"{env_prefix}_API_KEY" if env_prefix else "the judge's API key",
            error_class=JudgeError, timeout_class=JudgeError, refused_class=JudgeError,
        )
        self.gate = Gate(self.limits.concurrency)
        self._rpm = RateLimiter(self.limits.rpm) if self.limits.rpm else None
        self._tpm = RateLimiter(self.limits.tpm) if self.limits.tpm else None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model or self.base_url

    @property
    def structured(self) -> str:
        """The structured-output mode in use now (``auto`` settles on the first that works)."""
        return self._modes[0]

    @classmethod
    def from_env(
        cls, prefix: str, env: Mapping[str, str] | None = None, *, label: str | None = None, **kwargs: Any
    ) -> "JudgeClient | None":
        """The judge ``{prefix}_BASE_URL`` names (LLM-I's ``LLM_JUDGE_BASE_URL``,
        ``MLLM_JUDGE_BASE_URL``), with ``{prefix}_MODEL_NAME`` and ``{prefix}_API_KEY``;
        ``None`` when the base URL is unset."""
        import os

        env = os.environ if env is None else env
        base = (env.get(f"{prefix}_BASE_URL") or "").strip()
        if not base:
            return None
        return cls(
            base, model=(env.get(f"{prefix}_MODEL_NAME") or "").strip() or None,
            api_key=(env.get(f"{prefix}_API_KEY") or "").strip() or None,
            label=label or prefix.lower().replace("_", " "), env_prefix=prefix, **kwargs,
        )

    # -- the call ---------------------------------------------------------------------------
    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        reply: ReplyFormat | None = None,
        sampling: JudgeSampling | None = None,
        lines: bool = False,
    ) -> JudgeReply:
        """Ask the judge; with ``reply``, constrain its answer to that format (as JSON, or with
        ``lines=True`` as ``Label: N`` lines where a grammar can say so).

        Raises ``JudgeError`` (``transient`` set when retrying later could help).
        """
        sampling = sampling or JudgeSampling()
        state = self._state()
        started = time.monotonic()
        estimate = self._estimate(messages, sampling)
        attempts = [0]

        async def attempt() -> tuple[dict[str, Any], str, str]:
            attempts[0] += 1
            return await self._attempt(state, messages, sampling, reply, lines, estimate)

        limits = self.limits
        retry = Retry(attempts=limits.retries + 1, backoff=limits.backoff, max_wait=limits.max_retry_after)
        try:
            data, model, mode = await retry.run(attempt)
        except JudgeError as exc:
            if exc.transient and attempts[0] > 1:
                raise _judge_error(f"{exc} (gave up after {attempts[0]} attempts)", exc) from None
            raise
        text, finish, usage = _reply_text(data, self.label)
        if self._tpm is not None and usage.get("total_tokens"):
            self._tpm.adjust(usage["total_tokens"] - estimate)
        return JudgeReply(text, str(data.get("model") or model), mode, time.monotonic() - started, attempts[0],
                          usage, finish, _token_logprobs(data) if sampling.top_logprobs else ())

    # -- one attempt ----------------------------------------------------------------------
    async def _attempt(
        self, state: _LoopState, messages: Sequence[Mapping[str, Any]], sampling: JudgeSampling,
        reply: ReplyFormat | None, lines: bool, estimate: float,
    ) -> tuple[dict[str, Any], str, str]:
        """One request (under the limits), asked again at once without whatever the server
        refused; returns the answer, the model and the structured mode used."""
        model = await self._model(state)
        while True:
            mode = self._modes[0] if reply is not None else "off"
            body = self._body(model, messages, sampling, reply, mode, lines)
            if self._rpm is not None:
                await self._rpm.acquire(1)
            if self._tpm is not None:
                await self._tpm.acquire(estimate)
            try:
                async with self.gate:
                    answer = await self._send(state, "POST", "chat/completions", body)
                return answer.json(), model, mode
            except JudgeError as exc:
                if not _refused(exc):
                    raise
                if not self._drop(str(exc), body, mode, reply is not None):
                    refused = _judge_error(str(exc), exc)
                    refused.transient = False  # the same request would be refused again
                    raise refused from None

    async def _send(self, state: _LoopState, method: str, path: str, body: Any = None) -> http.Response:
        async with state.pools.client() as client:
            return await http.request(
                self._service, method, f"{self.base_url}/{path}", json=body, api_key=self.api_key,
                headers=self._headers, timeout=self.limits.timeout, max_bytes=_MAX_BODY, client=client,
            )

    # -- request shape --------------------------------------------------------------------
    def _body(
        self, model: str, messages: Sequence[Mapping[str, Any]], sampling: JudgeSampling,
        reply: ReplyFormat | None, mode: str, lines: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": list(messages)}
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(sampling, key)
            if value is not None and key not in self._refused:
                body[key] = value
        for key, value in sampling.extra_body.items():
            if key not in self._refused:
                body[key] = value
        if sampling.top_logprobs and "logprobs" not in self._refused and "top_logprobs" not in self._refused:
            body["logprobs"], body["top_logprobs"] = True, sampling.top_logprobs
        if reply is not None:
            if mode == "json_schema":
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": reply.name, "schema": reply.schema(), "strict": True}}
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object", "schema": reply.schema()}
            elif mode == "grammar":
                body["grammar"] = reply.grammar(lines=lines)
        return body

    def _drop(self, detail: str, body: Mapping[str, Any], mode: str, structured: bool) -> bool:
        """After a 400/422: stop sending what the server refused; whether asking again may help."""
        low = detail.lower()
        optional = [k for k in body if k not in ("model", "messages", "response_format", "grammar")]
        named = [k for k in optional if k.lower() in low]
        with self._lock:
            if named:
                self._refused.update(named)
                return True
            if structured and mode != "off" and any(w in low for w in _STRUCTURE_WORDS):
                if self._modes[0] == mode and len(self._modes) > 1:
                    self._modes.pop(0)
                return self._modes[0] != mode
        return False

    def _estimate(self, messages: Sequence[Mapping[str, Any]], sampling: JudgeSampling) -> float:
        chars, images = 0, 0
        for m in messages:
            content = m.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, Mapping) and part.get("type") == "text":
                        chars += len(str(part.get("text", "")))
                    else:
                        images += 1
        return chars / 4 + images * _IMAGE_TOKENS + (sampling.max_tokens or 512)

    def _setting(self, suffix: str) -> str:
        return f"{self.env_prefix}_{suffix}" if self.env_prefix else suffix.lower().replace("_", " ")

    # -- model discovery and per-loop state ---------------------------------------------------
    async def _model(self, state: _LoopState) -> str:
        if self.model:
            return self.model
        async with state.model_lock:
            if self.model:
                return self.model
            try:
                data = (await self._send(state, "GET", "models")).json()
            except JudgeError as exc:
                if exc.transient:
                    raise
                raise _judge_error(f"could not list the models of the {self.label} ({exc}); set "
                                   f"{self._setting('MODEL_NAME')}", exc) from None
            try:
                models = [str(m["id"]) for m in data["data"]]
            except (KeyError, TypeError):
                raise JudgeError(f"{self.base_url}/models did not return an OpenAI model list") from None
            if len(models) != 1:
                raise JudgeError(
                    f"the {self.label} at {self.base_url} serves {len(models)} models"
                    f"{' (' + ', '.join(models) + ')' if models else ''}; choose one with {self._setting('MODEL_NAME')}"
                )
            self.model = models[0]
            return self.model

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._loops.get(loop)
            if state is None:
                pools = http.Pools(self.limits.concurrency, timeout=self.limits.timeout)
                state = self._loops[loop] = _LoopState(pools, asyncio.Lock())
            return state

    async def aclose(self) -> None:
        """Close this event loop's connections."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._loops.pop(loop, None)
        if state is not None:
            await state.pools.aclose()


def _refused(exc: JudgeError) -> bool:
    """Whether an error says the server refused something in the request (llama-cpp-python's
    server answers a field it cannot validate with a 500)."""
    return exc.status in (400, 422) or (exc.status == 500 and "validation error" in str(exc).lower())


def _judge_error(message: str, cause: JudgeError) -> JudgeError:
    error = JudgeError(message, transient=cause.transient)
    error.status, error.retry_after = cause.status, cause.retry_after
    return error


def _reply_text(data: Mapping[str, Any], label: str) -> tuple[str, str | None, dict[str, int]]:
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise JudgeError(f"malformed response from the {label}: no choices[0].message") from None
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    elif not isinstance(text, str):
        text = "" if text is None else str(text)
    usage = data.get("usage")
    usage = {k: int(v) for k, v in usage.items() if isinstance(v, int)} if isinstance(usage, dict) else {}
    return text, choice.get("finish_reason") if isinstance(choice, dict) else None, usage


def _token_logprobs(data: Mapping[str, Any]) -> tuple[tuple[str, dict[str, float]], ...]:
    """The reply's tokens with their alternatives (OpenAI's ``choices[0].logprobs.content``);
    empty when the server sent none or sent them malformed."""
    try:
        content = data["choices"][0]["logprobs"]["content"]
        out = []
        for item in content:
            alternatives = {str(a["token"]): float(a["logprob"]) for a in item.get("top_logprobs") or ()}
            alternatives.setdefault(str(item["token"]), float(item["logprob"]))
            out.append((str(item["token"]), alternatives))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return ()
    return tuple(out)
