"""A writer behind any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, llama.cpp, OpenAI).

Plain httpx, no SDK. Transient failures (connection refused or reset, 429, 5xx) are retried with
exponential backoff before any text has arrived; everything else becomes one ``WriterError``
whose message says what to change.

>>> w = OpenAIWriter("http://127.0.0.1:8000/v1", model="my-model")
>>> w.name
'my-model'
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Sequence

import httpx

from ..errors import WriterError
from .base import ImageInput, Message, Sampling, image_data_url, is_url, load_image

__all__ = ["OpenAIWriter"]

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 30.0


class OpenAIWriter:
    """Writes through ``POST {base_url}/chat/completions``.

    ``model=None`` asks the server (``GET {base_url}/models``) and uses its only model.
    ``timeout`` bounds each wait for the server (connect uses ``connect_timeout``).
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

    @property
    def name(self) -> str:
        return self.model or f"openai-compatible@{self.base_url}"

    # -- public ------------------------------------------------------------------------------

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> str:
        """The whole answer in one (non-streaming) request."""
        async with self._client() as client:
            body = await self._body(client, messages, sampling, stream=False)
            resp = await self._send(client, body, stream=False)
            data = _json_or_error(resp.content, "the answer")
            try:
                choice = data["choices"][0]
                content = choice["message"].get("content") or ""
            except (KeyError, IndexError, TypeError, AttributeError):
                raise WriterError(
                    f"the endpoint at {self.base_url} answered without choices[0].message: "
                    f"{_clip(resp.text)}"
                ) from None
            if not isinstance(content, str):
                raise WriterError("the endpoint's message content is not text")
            return content

    async def stream(self, messages: Sequence[Message], sampling: Sampling | None = None) -> AsyncIterator[str]:
        """Yield text as it arrives over server-sent events."""
        async with self._client() as client:
            body = await self._body(client, messages, sampling, stream=True)
            resp = await self._send(client, body, stream=True)
            try:
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype and "json" in ctype:
                    # A server that ignores "stream": true answers with one JSON object.
                    data = _json_or_error(await resp.aread(), "the answer")
                    text = _message_text(data)
                    if text:
                        yield text
                    return
                async for piece in self._events(resp):
                    yield piece
            finally:
                await resp.aclose()

    async def list_models(self) -> list[str]:
        """The model ids the endpoint serves."""
        async with self._client() as client:
            return await self._list_models(client)

    # -- stages ------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        # One client per call: nothing loop-bound outlives the event loop that made it.
        headers = {"Accept": "application/json", **self._headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
        )

    async def _body(
        self, client: httpx.AsyncClient, messages: Sequence[Message], sampling: Sampling | None, *, stream: bool
    ) -> dict[str, Any]:
        s = sampling or self.sampling
        body: dict[str, Any] = {
            "model": await self._model(client),
            "messages": [_wire_message(m) for m in messages],
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "stream": stream,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        return body

    async def _model(self, client: httpx.AsyncClient) -> str:
        if self.model:
            return self.model
        models = await self._list_models(client)
        if len(models) == 1:
            self.model = models[0]
            return self.model
        if not models:
            raise WriterError(f"the endpoint at {self.base_url} serves no models; start it with a model")
        raise WriterError(
            f"the endpoint at {self.base_url} serves {len(models)} models ({', '.join(models)}); "
            "choose one with --model-name"
        )

    async def _list_models(self, client: httpx.AsyncClient) -> list[str]:
        resp = await self._request(client, "GET", "models")
        if resp.status_code >= 400:
            raise WriterError(
                f"could not list the models at {self.base_url}/models ({_status(resp)}); "
                "name the model with --model-name, or check --base-url (it usually ends in /v1)"
            )
        data = _json_or_error(resp.content, "the model list")
        try:
            return [str(m["id"]) for m in data["data"]]
        except (KeyError, TypeError):
            raise WriterError(f"{self.base_url}/models did not return an OpenAI model list") from None

    async def _send(self, client: httpx.AsyncClient, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        resp = await self._request(client, "POST", "chat/completions", json=body, stream=stream)
        if resp.status_code < 400:
            return resp
        await resp.aread()
        await resp.aclose()
        raise await self._status_error(client, resp, body["model"])

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, *, json: Any = None, stream: bool = False
    ) -> httpx.Response:
        """One request, retried on transient failures; returns the last response."""
        attempt = 0
        while True:
            try:
                req = client.build_request(method, path, json=json)
                resp = await client.send(req, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt < self.retries:
                    await asyncio.sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                raise WriterError(
                    f"cannot reach the writer endpoint at {self.base_url} ({_describe(exc)}); "
                    "is the server running? check --base-url"
                ) from None
            except httpx.TimeoutException:
                raise WriterError(
                    f"the writer endpoint at {self.base_url} did not answer within {self.timeout:g} s; "
                    "raise the timeout or check the server"
                ) from None
            except httpx.HTTPError as exc:
                raise WriterError(f"request to {self.base_url} failed: {_describe(exc)}") from None
            if resp.status_code in _TRANSIENT_STATUS and attempt < self.retries:
                retry_after = resp.headers.get("retry-after")
                await resp.aclose()
                await asyncio.sleep(self._delay(attempt, retry_after))
                attempt += 1
                continue
            return resp

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), _MAX_RETRY_AFTER)
            except ValueError:
                pass
        return self.backoff * (2**attempt)

    async def _status_error(self, client: httpx.AsyncClient, resp: httpx.Response, model: str) -> WriterError:
        code = resp.status_code
        detail = _error_detail(resp)
        if code in (401, 403):
            return WriterError(
                f"the writer endpoint at {self.base_url} refused the request ({_status(resp)}: {detail}); "
                "set --api-key or LLMI_API_KEY / OPENAI_API_KEY"
            )
        if code in (400, 404, 422) and (code == 404 or "model" in detail.lower()):
            try:
                served = await self._list_models(client)
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
        if code in _TRANSIENT_STATUS:
            return WriterError(
                f"the writer endpoint at {self.base_url} kept failing ({_status(resp)}: {detail}) "
                f"after {self.retries + 1} attempts; try again later"
            )
        return WriterError(f"the writer endpoint at {self.base_url} rejected the request ({_status(resp)}: {detail})")

    async def _events(self, resp: httpx.Response) -> AsyncIterator[str]:
        """Parse the SSE stream of chat-completion chunks."""
        done = finished = False
        try:
            async for line in resp.aiter_lines():
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
            raise WriterError(f"the answer's stream was cut off ({_describe(exc)}); try again") from None
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
    return image_data_url(load_image(img))


def _message_text(data: Any) -> str:
    try:
        return data["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise WriterError("the endpoint's answer has no choices[0].message") from None


def _json_or_error(content: bytes, what: str) -> Any:
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WriterError(f"the writer endpoint sent malformed JSON for {what}: {_clip(content.decode('utf-8', 'replace'))!r}") from None


def _error_detail(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _clip(resp.text) or resp.reason_phrase
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if data.get(key):
                return _error_text(data[key])
    return _clip(resp.text)


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        return _clip(str(err.get("message") or err))
    if isinstance(err, list) and err and isinstance(err[0], dict):  # FastAPI validation errors
        return _clip("; ".join(str(e.get("msg", e)) for e in err))
    return _clip(str(err))


def _status(resp: httpx.Response) -> str:
    return f"HTTP {resp.status_code} {resp.reason_phrase}".strip()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _clip(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
