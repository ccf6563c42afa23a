"""A writer behind any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, llama.cpp, OpenAI).

Plain HTTP through :mod:`llmi.http`, no SDK. Transient failures (connection refused or reset,
408/425/429, 5xx) are retried with jittered exponential backoff (``Retry-After`` honoured up to
30 s) before any text has arrived; everything else becomes one ``WriterError`` whose message
says what to change.

>>> w = OpenAIWriter("http://127.0.0.1:8000/v1", model="my-model")
>>> w.name
'my-model'
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

import httpx

from .. import http
from ..errors import WriterError
from .base import ImageInput, Message, Sampling, is_url, load_image

__all__ = ["OpenAIWriter"]

T = TypeVar("T")
#: a streamed answer larger than this is a runaway server, not an answer (a 24k-token
#: completion streams about 5 MB of chunks)
MAX_STREAM_BYTES = 64 * 1024 * 1024
_KEY_HINT = "--api-key or LLMI_API_KEY / OPENAI_API_KEY"


class OpenAIWriter:
    """Writes through ``POST {base_url}/chat/completions``.

    ``model=None`` asks the server (``GET {base_url}/models``) and uses its only model.
    ``timeout`` bounds each wait for the server (connect uses ``connect_timeout``); ``retries``
    is how many more attempts a transient failure gets.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        sampling: Sampling | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not base_url or not base_url.lower().startswith(("http://", "https://")):
            raise WriterError(f"the writer base URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.sampling = sampling or Sampling()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._headers = dict(headers or {})
        # a completion arrives in one piece: a timeout means "longer than allowed", not "retry"
        self._service = http.Service(
            f"the writer endpoint at {self.base_url}", key_hint=_KEY_HINT,
            error_class=WriterError, timeout_class=WriterError, refused_class=WriterError, timeout_transient=False,
        )

    @property
    def name(self) -> str:
        return self.model or f"openai-compatible@{self.base_url}"

    # -- public ------------------------------------------------------------------------------

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> str:
        """The whole answer in one (non-streaming) request."""
        body = await self._body(messages, sampling, stream=False)
        answer = await self._retrying(
            http.request, self._service, "POST", self._url("chat/completions"), json=body,
            headers=self._headers, api_key=self.api_key, timeout=None, read_timeout=self.timeout,
            connect_timeout=self.connect_timeout, model=body["model"],
        )
        content = _message_text(answer.json())
        if not isinstance(content, str):
            raise WriterError("the endpoint's message content is not text")
        return content

    async def stream(self, messages: Sequence[Message], sampling: Sampling | None = None) -> AsyncIterator[str]:
        """Yield text as it arrives over server-sent events."""
        body = await self._body(messages, sampling, stream=True)
        async with AsyncExitStack() as stack:
            def open_stream() -> Awaitable[httpx.Response]:
                return stack.enter_async_context(http.stream(
                    self._service, "POST", self._url("chat/completions"), json=body, headers=self._headers,
                    api_key=self.api_key, timeout=self.timeout, connect_timeout=self.connect_timeout,
                ))

            resp = await self._retrying(open_stream, model=body["model"])
            ctype = resp.headers.get("content-type", "")
            if "text/event-stream" not in ctype and "json" in ctype:
                # A server that ignores "stream": true answers with one JSON object.
                text = _message_text(_json_or_error(await resp.aread(), "the answer"))
                if text:
                    yield text
                return
            async for piece in self._events(resp):
                yield piece

    async def list_models(self) -> list[str]:
        """The model ids the endpoint serves."""
        try:
            answer = await self._retry().run(
                http.request, self._service, "GET", self._url("models"), headers=self._headers,
                api_key=self.api_key, timeout=None, read_timeout=self.timeout, connect_timeout=self.connect_timeout,
            )
        except WriterError as exc:
            if exc.status is None:
                raise self._unreachable(exc) from None
            raise WriterError(
                f"could not list the models at {self.base_url}/models ({exc}); "
                "name the model with --model-name, or check --base-url (it usually ends in /v1)"
            ) from None
        data = answer.json()
        try:
            return [str(m["id"]) for m in data["data"]]
        except (KeyError, TypeError):
            raise WriterError(f"{self.base_url}/models did not return an OpenAI model list") from None

    # -- stages ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def _retry(self) -> http.Retry:
        return http.Retry(attempts=self.retries + 1, backoff=self.backoff)

    async def _retrying(self, call: Callable[..., Awaitable[T]], *args: Any, model: str, **kwargs: Any) -> T:
        """``call`` under the writer's retries, its final error explained for the user."""
        try:
            return await self._retry().run(call, *args, **kwargs)
        except WriterError as exc:
            raise await self._explain(exc, model) from None

    async def _body(self, messages: Sequence[Message], sampling: Sampling | None, *, stream: bool) -> dict[str, Any]:
        s = sampling or self.sampling
        body: dict[str, Any] = {
            "model": await self._model(),
            "messages": [_wire_message(m) for m in messages],
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "stream": stream,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        return body

    async def _model(self) -> str:
        if self.model:
            return self.model
        models = await self.list_models()
        if len(models) == 1:
            self.model = models[0]
            return self.model
        if not models:
            raise WriterError(f"the endpoint at {self.base_url} serves no models; start it with a model")
        raise WriterError(
            f"the endpoint at {self.base_url} serves {len(models)} models ({', '.join(models)}); "
            "choose one with --model-name"
        )

    def _unreachable(self, exc: WriterError) -> WriterError:
        if "did not answer" in str(exc):
            return WriterError(f"{exc}; raise the timeout or check the server")
        return WriterError(f"{exc}; is the server running? check --base-url")

    async def _explain(self, exc: WriterError, model: str) -> WriterError:
        """The final error of a chat request, with what to change."""
        code = exc.status
        if code is None:
            return self._unreachable(exc)
        if code in (400, 404, 422) and (code == 404 or "model" in str(exc).lower()):
            try:
                served = await self.list_models()
            except WriterError:
                served = None
            if served is not None and model not in served:
                return WriterError(
                    f"the endpoint at {self.base_url} does not serve the model {model!r}; "
                    f"it serves: {', '.join(served) or 'nothing'}; choose one with --model-name"
                )
            if code == 404 and served is None:
                return WriterError(
                    f"{self.base_url}/chat/completions was not found (404); check --base-url "
                    "(it usually ends in /v1)"
                )
        if exc.transient:
            return WriterError(f"{exc}; it kept failing after {self.retries + 1} attempts, try again later")
        return exc

    async def _events(self, resp: httpx.Response) -> AsyncIterator[str]:
        """Parse the SSE stream of chat-completion chunks, at most ``MAX_STREAM_BYTES`` of them."""
        done = finished = False
        seen = 0
        try:
            async for line in resp.aiter_lines():
                seen += len(line)
                if seen > MAX_STREAM_BYTES:
                    raise WriterError(f"the writer endpoint streamed more than {MAX_STREAM_BYTES} bytes for one answer; stopped")
                line = line.strip()
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event:/id: fields
                payload = line[5:].strip()
                if payload == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(payload)
                except json.JSONDecodeError:
                    raise WriterError(
                        f"the writer endpoint sent a malformed stream chunk: {_clip(payload, 80)!r}"
                    ) from None
                if not isinstance(chunk, dict):
                    raise WriterError(f"the writer endpoint sent a stream chunk that is not an object: {_clip(payload, 80)!r}")
                if chunk.get("error"):
                    raise WriterError(f"the writer endpoint reported an error mid-stream: {_error_text(chunk['error'])}")
                choices = chunk.get("choices") or []
                if not choices:
                    continue
                choice = choices[0] if isinstance(choices[0], dict) else {}
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(text, str) and text:
                    yield text
                if choice.get("finish_reason"):
                    finished = True
        except httpx.TimeoutException:
            raise WriterError(
                f"the writer endpoint stopped sending for {self.timeout:g} s mid-answer; "
                "raise the timeout or check the server"
            ) from None
        except httpx.HTTPError as exc:
            raise WriterError(f"the answer's stream was cut off ({exc or type(exc).__name__}); try again") from None
        if not (done or finished):
            raise WriterError("the answer's stream ended before it was complete (no finish and no [DONE]); try again")


# -- helpers -----------------------------------------------------------------------------------


def _wire_message(m: Message) -> dict[str, Any]:
    if not m.images:
        return {"role": m.role, "content": m.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}]
    for img in m.images:
        parts.append({"type": "image_url", "image_url": {"url": _image_url(img)}})
    return {"role": m.role, "content": parts}


def _image_url(img: ImageInput) -> str:
    if is_url(img):
        return str(img)
    return load_image(img).data_url


def _message_text(data: Any) -> Any:
    try:
        return data["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise WriterError(f"the endpoint's answer has no choices[0].message: {_clip(str(data))}") from None


def _json_or_error(content: bytes, what: str) -> Any:
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WriterError(f"the writer endpoint sent malformed JSON for {what}: {_clip(content.decode('utf-8', 'replace'))!r}") from None


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        return _clip(str(err.get("message") or err))
    return _clip(str(err))


def _clip(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
