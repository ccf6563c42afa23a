"""The one HTTP layer: send a request, turn every failure into an ``llmi.errors`` value, retry.

Every HTTP caller in llmi (the search and image backends, the image-server client, the
OpenAI-compatible writer, the judges) sends through :func:`request` or :func:`stream`, so a
failure means the same thing wherever it happens:

=============================================  ===========================  =========
what happened                                  raised                       transient
=============================================  ===========================  =========
connection refused or reset, DNS, cut body     ``service.error_class``      yes
no answer within ``timeout``                   ``service.timeout_class``    yes
401 / 403                                      "rejected the API key"       no
404                                            "check the URL"              no
408 / 425 / 429 (``Retry-After`` kept)         ``service.error_class``      yes
quota or billing exhausted (any status)        ``service.error_class``      no
the provider's content filter refused          ``service.refused_class``    no
5xx (except 501 and 505)                       ``service.error_class``      yes
a redirect, any other 4xx (the API's message)  ``service.error_class``      no
a body over ``max_bytes``                      ``service.error_class``      no
a 2xx body that is not JSON or not the shape   "malformed response"         no
=============================================  ===========================  =========

Every raised error carries ``transient``, ``status`` (``None`` when no answer came) and
``retry_after`` (seconds, from the header). The classes default to the tool side
(``BackendError``, ``ToolTimeout``, ``ContentRefused``) so that the engine's retries see them;
other callers name their own (the writer raises ``WriterError`` for all three).

Retries belong to exactly one layer. For tools that is the engine; callers outside it wrap a
call in :meth:`Retry.run` (transient errors only, jittered exponential backoff, ``Retry-After``
honoured up to ``max_wait``).

>>> import asyncio
>>> serp = Service("SerpAPI", key_hint="SERP_API_KEY")
>>> async def search(q):
...     answer = await request(serp, "GET", "https://serpapi.com/search.json",
...                            params={"q": q, "engine": "google_images"}, timeout=20)
...     return answer.json()["images_results"]
>>> results = asyncio.run(Retry(attempts=3).run(search, "owl"))  # doctest: +SKIP

Nothing loop-bound outlives a call: without ``client=`` each request opens and closes its own
``httpx.AsyncClient``; a caller that keeps connections (the image-server client) passes one.
Every client shares one TLS context (:func:`ssl_context`): building one loads the CA bundle,
about 80 ms, which would otherwise be paid on every call.
"""

from __future__ import annotations

import asyncio
import json as _json
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from .errors import BackendError, ContentRefused, LlmiError, ToolTimeout

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Pools",
    "Response",
    "Retry",
    "Service",
    "classify",
    "parse_retry_after",
    "request",
    "ssl_context",
    "stream",
    "transport_error",
]

T = TypeVar("T")

#: answers larger than this are refused unless a call sets its own bound (b64 images of a
#: few MB are normal; a runaway or hostile server is not)
MAX_RESPONSE_BYTES = 80 * 1024 * 1024

_TRANSIENT_STATUS = frozenset({408, 425, 429})
_PERMANENT_5XX = frozenset({501, 505})
# error codes and messages providers use for safety refusals (Ark: *SensitiveContentDetected*,
# *RiskDetection*; OpenAI: content_policy_violation, moderation_blocked)
_REFUSAL_MARKERS = ("sensitivecontent", "riskdetection", "content_policy", "moderation", "safety")
# an exhausted plan often answers 429 (OpenAI's insufficient_quota, SerpAPI's "run out of
# searches", Ark's AccountOverdue): retrying will not help
_QUOTA_MARKERS = ("quota", "overdue", "billing", "run out of searches")


@dataclass(frozen=True)
class Service:
    """Who is being called, for messages, and which ``llmi.errors`` classes its failures take.

    ``name`` starts every message (``"SerpAPI"``, ``"the writer endpoint"``); ``key_hint`` says
    what to check when the key is refused (``"SERP_API_KEY"``).

    >>> err = Service("Ark", key_hint="ARK_API_KEY").error("no images", status=200)
    >>> (type(err).__name__, err.transient, err.status)
    ('BackendError', False, 200)
    """

    name: str
    key_hint: str | None = None
    error_class: type[LlmiError] = BackendError
    timeout_class: type[LlmiError] = ToolTimeout
    refused_class: type[LlmiError] = ContentRefused
    #: whether running out of time is worth retrying: yes for a whole call cut short (the
    #: next may be quicker), no where a timeout means "this takes longer than you allow" (a
    #: writer's completion arrives in one piece: the same request will take as long again)
    timeout_transient: bool = True

    def error(
        self,
        message: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        cls: type[LlmiError] | None = None,
    ) -> LlmiError:
        """An error of this service's class (or ``cls``) with the retry facts set."""
        err = (cls or self.error_class)(message)
        err.transient = transient
        err.status = status
        err.retry_after = retry_after
        return err

    def malformed(self, what: str, status: int | None = None) -> LlmiError:
        """The error for an answer that is not in the format the API documents."""
        return self.error(f"malformed response from {self.name}: {what}", status=status)


@dataclass(frozen=True)
class Response:
    """A complete answer with a 2xx status, its body read within the call's size bound."""

    service: Service
    status: int
    headers: httpx.Headers
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self, expect: type | tuple[type, ...] = dict, *, error_in_body: bool = True) -> Any:
        """The body as JSON of type ``expect``, else the service's "malformed response" error.

        With ``error_in_body`` a JSON object holding a non-empty ``"error"`` is classified like
        an error status (some gateways answer 200 with an error object).
        """
        try:
            body = _json.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            raise self.service.malformed(f"not JSON ({_snippet(self.content)})", self.status) from None
        if not isinstance(body, expect):
            names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
            raise self.service.malformed(f"expected a JSON {_JSON_NAMES.get(names, names)}, got {type(body).__name__}", self.status)
        if error_in_body and isinstance(body, dict) and body.get("error"):
            raise classify(self.service, self.status, body, self.headers, self.url)
        return body


_JSON_NAMES = {"dict": "object", "list": "array"}


async def request(
    service: Service,
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    data: Mapping[str, Any] | None = None,
    files: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    api_key: str | None = None,
    timeout: float | None = 60.0,
    read_timeout: float | None = None,
    connect_timeout: float = 10.0,
    max_bytes: int = MAX_RESPONSE_BYTES,
    client: httpx.AsyncClient | None = None,
) -> Response:
    """Send one request and return its 2xx answer, or raise the classified error.

    ``timeout`` bounds the whole attempt (connecting, sending, reading; ``None``: no bound);
    ``read_timeout`` each wait for the server (default: ``timeout``), and connecting alone is
    bounded by ``connect_timeout`` so a dead host fails fast. ``api_key`` is sent as a Bearer
    token. The body is read up to ``max_bytes`` (decoded), and no further.
    """
    wait = read_timeout if read_timeout is not None else timeout
    try:
        async with asyncio.timeout(timeout):
            async with _session(client) as http:
                req = http.build_request(
                    method, url, params=params, json=json, data=data, files=files,
                    headers=_headers(headers, api_key), timeout=_limits(wait, connect_timeout),
                )
                response = await http.send(req, stream=True)
                try:
                    content = await _read(service, response, max_bytes)
                finally:
                    await response.aclose()
    except TimeoutError:
        raise _timed_out(service, url, timeout) from None
    except httpx.HTTPError as exc:
        raise transport_error(service, exc, url, wait) from None
    if not response.is_success:
        raise _status_error(service, response.status_code, content, response.headers, url)
    return Response(service, response.status_code, response.headers, content, _public(url))


@asynccontextmanager
async def stream(
    service: Service,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 10.0,
    max_error_bytes: int = 1024 * 1024,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[httpx.Response]:
    """Send one request and yield its open 2xx response for the caller to read as it arrives.

    ``timeout`` bounds each wait (the headers, then every read), not the whole stream. An error
    status is read (up to ``max_error_bytes``) and raised as :func:`request` would; failures
    while reading the body map through :func:`transport_error`.

    >>> async def lines(url):                                   # doctest: +SKIP
    ...     async with stream(Service("the server"), "GET", url) as response:
    ...         async for line in response.aiter_lines():
    ...             yield line
    """
    try:
        async with _session(client) as http:
            req = http.build_request(
                method, url, json=json, headers=_headers(headers, api_key), timeout=_limits(timeout, connect_timeout)
            )
            response = await http.send(req, stream=True)
            try:
                if not response.is_success:
                    content = await _read(service, response, max_error_bytes, truncate=True)
                    raise _status_error(service, response.status_code, content, response.headers, url)
                yield response
            finally:
                await response.aclose()
    except httpx.HTTPError as exc:
        raise transport_error(service, exc, url, timeout) from None


def transport_error(service: Service, exc: httpx.HTTPError, url: str, timeout: float | None = None) -> LlmiError:
    """The ``llmi.errors`` value for an httpx failure that brought no (complete) answer."""
    where = _public(url)
    if isinstance(exc, httpx.ConnectTimeout):
        return service.error(f"cannot reach {service.name} ({where}): no connection within the time allowed", transient=True)
    if isinstance(exc, httpx.TimeoutException):
        return _timed_out(service, url, timeout)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return service.error(f"{service.name}: {where} is not a URL llmi can call ({_describe(exc)}); check the setting")
    if isinstance(exc, httpx.DecodingError):
        return service.malformed(f"the body could not be decoded ({_describe(exc)})")
    if isinstance(exc, httpx.TooManyRedirects):
        return service.error(f"{service.name} at {where} redirected too many times")
    # refused, reset, DNS, a body cut short, protocol errors: the next attempt may well work
    return service.error(f"cannot reach {service.name} ({where}): {type(exc).__name__}: {_describe(exc)}", transient=True)


def classify(
    service: Service, status: int, body: Any, headers: Mapping[str, str], url: str = ""
) -> LlmiError:
    """The ``llmi.errors`` value for an error answer: its status and its (decoded) body."""
    code, message = _api_error(body)
    retry_after = parse_retry_after(headers.get("retry-after"))
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    what = f"{service.name} answered {detail}"
    # a refusal or an exhausted plan is the client's lot (4xx, or an error in a 2xx); a 5xx
    # that happens to mention "quota" or "safety" is still the server's trouble
    marks = f"{code} {message}".lower() if status < 500 else ""

    def fail(text: str, transient: bool = False, cls: type[LlmiError] | None = None) -> LlmiError:
        return service.error(text, transient=transient, status=status, retry_after=retry_after, cls=cls)

    if status in (401, 403):
        hint = service.key_hint or "the API key"
        return fail(f"{service.name} rejected the API key ({detail}) — check {hint}: it is missing, wrong or lacks access")
    if any(marker in marks for marker in _REFUSAL_MARKERS):
        return fail(f"{what} — the provider's content filter refused; change the prompt or image", cls=service.refused_class)
    if any(marker in marks for marker in _QUOTA_MARKERS):
        key = f" behind {service.key_hint}" if service.key_hint else ""
        return fail(f"{service.name}: quota exhausted ({detail}) — the account{key} has no quota or credit left; retrying will not help")
    if status == 404:
        return fail(f"{what} — check the URL ({_public(url) or 'unknown'})")
    if 300 <= status < 400:
        location = headers.get("location")
        return fail(f"{what} — redirected" + (f" to {location}; use that URL" if location else ""))
    if status in _TRANSIENT_STATUS or (status >= 500 and status not in _PERMANENT_5XX):
        wait = f" (asked to retry after {retry_after:g} s)" if retry_after is not None else ""
        return fail(what + wait, transient=True)
    return fail(what)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date.

    >>> parse_retry_after("7"), parse_retry_after("soon"), parse_retry_after(None)
    (7.0, None, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    10.0
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Retry:
    """How a caller outside the engine retries: ``attempts`` tries in all, transient errors only.

    Before retry ``k`` (from 0) it waits the ``Retry-After`` the service asked for, else
    ``backoff · 2^k`` scaled by a random factor in [0.5, 1.5) (so a GRPO batch of judges
    that failed together does not retry together), never more than ``max_wait``.

    >>> Retry(backoff=1.0, max_wait=30.0).delay(0, BackendError("busy", transient=True)) < 1.5
    True
    >>> err = BackendError("busy", transient=True); err.retry_after = 300.0
    >>> Retry(max_wait=30.0).delay(0, err)
    30.0
    """

    attempts: int = 3
    backoff: float = 0.5
    max_wait: float = 30.0

    def delay(self, attempt: int, error: BaseException) -> float:
        asked = getattr(error, "retry_after", None)
        if asked is not None:
            return min(float(asked), self.max_wait)
        return min(self.backoff * 2**attempt * (0.5 + random.random()), self.max_wait)

    async def run(
        self,
        call: Callable[..., Awaitable[T]],
        *args: Any,
        deadline: float | None = None,
        on_retry: Callable[[int, LlmiError, float], None] | None = None,
        **kwargs: Any,
    ) -> T:
        """``await call(*args, **kwargs)``, retried as described; the last error is raised.

        ``deadline`` (a ``time.monotonic()`` value) stops retrying when the next wait would pass
        it; ``on_retry(attempt, error, delay)`` is told before each wait (for logs).
        """
        for attempt in range(max(1, self.attempts)):
            try:
                return await call(*args, **kwargs)
            except LlmiError as exc:
                if not exc.transient or attempt + 1 >= self.attempts:
                    raise
                wait = self.delay(attempt, exc)
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise
                if on_retry is not None:
                    on_retry(attempt, exc, wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


# -- internals ---------------------------------------------------------------------------------


@asynccontextmanager
async def _session(client: httpx.AsyncClient | None) -> AsyncIterator[httpx.AsyncClient]:
    if client is not None:
        yield client
        return
    # each request sets its own timeouts
    async with httpx.AsyncClient(follow_redirects=False, verify=ssl_context()) as own:
        yield own


_ssl_lock = threading.Lock()
_ssl: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The TLS context every llmi HTTP client shares (the system's trust store, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), built once: a context is free of any event loop and
    safe to share between threads, and building one costs about 80 ms."""
    global _ssl
    with _ssl_lock:
        if _ssl is None:
            _ssl = httpx.create_ssl_context(trust_env=True)
        return _ssl


class Pools:
    """Up to ``connections`` keep-alive connections, spread over small httpx pools.

    httpx's connection pool does work per request that grows with the pool's size, so one pool
    of 64+ connections is several times slower than several small ones (1,024 requests at 128
    at once: 49 s through one pool, 7 s through 32 pools of 4). A caller that keeps connections
    (a judge, the image-server client) makes one ``Pools`` per event loop and borrows the least
    busy pool for each request:

    >>> async def main():
    ...     pools = Pools(16)
    ...     async with pools.client() as client:
    ...         busy = pools.busy[:]
    ...     await pools.aclose()
    ...     return len(pools.clients), busy
    >>> asyncio.run(main())
    (4, [1, 0, 0, 0])
    """

    POOL_SIZE = 4

    def __init__(self, connections: int, *, timeout: float | None = None, connect_timeout: float = 10.0) -> None:
        count = max(1, -(-connections // self.POOL_SIZE))
        size = -(-max(1, connections) // count) + 1  # +1: a health check or a model listing beside
        self.clients = [
            httpx.AsyncClient(
                trust_env=False, follow_redirects=False, verify=ssl_context(),
                timeout=_limits(timeout, connect_timeout),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            )
            for _ in range(count)
        ]
        self.busy = [0] * count  # requests in flight per pool

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """The pool with the fewest requests in flight, for one request."""
        i = min(range(len(self.clients)), key=self.busy.__getitem__)
        self.busy[i] += 1
        try:
            yield self.clients[i]
        finally:
            self.busy[i] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def _limits(wait: float | None, connect_timeout: float) -> httpx.Timeout:
    return httpx.Timeout(wait, connect=connect_timeout if wait is None else min(connect_timeout, wait))


def _headers(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    out = {"Accept": "application/json", **(headers or {})}
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


async def _read(service: Service, response: httpx.Response, max_bytes: int, *, truncate: bool = False) -> bytes:
    declared = response.headers.get("content-length", "")
    if not truncate and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(service, response.status_code, f"{int(declared)} bytes declared")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            if truncate:
                chunks.append(chunk[: max(0, len(chunk) - (size - max_bytes))])
                break
            raise _too_large(service, response.status_code, f"more than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(service: Service, status: int, what: str) -> LlmiError:
    return service.error(f"{service.name} answered with {what}, over the limit for one answer", status=status)


def _status_error(service: Service, status: int, content: bytes, headers: Mapping[str, str], url: str) -> LlmiError:
    try:
        body: Any = _json.loads(content)
    except (ValueError, UnicodeDecodeError):
        body = " ".join(content[:300].decode("utf-8", "replace").split())
    return classify(service, status, body, headers, url)


def _timed_out(service: Service, url: str, timeout: float | None) -> LlmiError:
    within = f" within {timeout:g} s" if timeout is not None else " in time"
    return service.error(
        f"{service.name} did not answer{within} ({_public(url)})",
        transient=service.timeout_transient, cls=service.timeout_class,
    )


def _api_error(body: Any) -> tuple[str, str]:
    """(code, message) from the error shapes APIs use: OpenAI's and Ark's ``{"error": {...}}``,
    SerpAPI's ``{"error": "..."}``, MediaWiki's ``{"error": {"code", "info"}}``, FastAPI's
    ``{"detail": ...}``, or plain text."""
    if isinstance(body, str):
        return "", _clip(body)
    if not isinstance(body, dict):
        return "", ""
    err = body.get("error")
    if isinstance(err, dict):
        code = str(err.get("code") or err.get("type") or "")
        return code, _clip(str(err.get("message") or err.get("info") or body.get("message") or ""))
    for value in (err, body.get("detail"), body.get("message")):
        if isinstance(value, str) and value:
            return "", _clip(value)
        if isinstance(value, list) and value:  # FastAPI's validation errors
            return "", _clip("; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in value))
    return "", ""


def _public(url: str) -> str:
    """``url`` without its query string, which may hold a key (SerpAPI's ``api_key=``)."""
    try:
        return str(httpx.URL(url).copy_with(query=None, fragment=None))
    except (httpx.InvalidURL, TypeError):
        return "an invalid URL"


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _snippet(content: bytes, limit: int = 120) -> str:
    text = content[:limit].decode("utf-8", "replace").strip()
    return repr(text + ("..." if len(content) > limit else ""))
