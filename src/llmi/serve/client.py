"""An async client for one or several image servers, load-balanced.

>>> client = ImageServerClient(["http://gpu-a:8000", "http://gpu-b:8000"])  # doctest: +SKIP
>>> images = await client.generate("a lighthouse at dusk", seed=7)           # doctest: +SKIP

Each call goes to the healthy server with the fewest requests in flight (ties rotate), at most
``max_concurrency_per_server`` at a time per server; callers beyond that wait for a slot.

Each call is ONE POST: retrying is the caller's job (the engine's, for the Qwen tools; wrap a
call in :class:`llmi.http.Retry` elsewhere), so one image costs at most as many POSTs as the
caller has attempts. A server that fails a call (refused or reset connection, 5xx, 503 queue
full or still loading) is marked down — for its ``Retry-After`` when it gave one, else for a
cool-down that doubles with each failure — so the next attempt goes to another server, or
waits for this one to come back. 4xx answers are the caller's mistake and mark nothing.
Errors are those of :mod:`llmi.http`: :class:`BackendError` (``transient`` set for what is worth
retrying, ``retry_after`` kept) and :class:`ToolTimeout`.

The client may be used from several event loops over its life (the engine's sync wrapper
runs its own): HTTP connections and waiting queues are kept per loop, health marks are shared.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import http
from ..errors import BackendError, ConfigError, LlmiError, ToolTimeout
from ..image import ImageData

__all__ = ["ImageServerClient", "ServerImages", "ServerStatus", "parse_urls"]



def parse_urls(value: str | Sequence[str]) -> list[str]:
    """Comma-separated (or listed) server URLs, normalised, duplicates dropped.

    >>> parse_urls("localhost:8000, http://h:8001/")
    ['http://localhost:8000', 'http://h:8001']
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    urls: list[str] = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url:
            continue
        if "://" not in url:
            url = "http://" + url
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"image server URL {item!r} must be http(s)")
        if url not in urls:
            urls.append(url)
    return urls


@dataclass(frozen=True)
class ServerImages:
    """What one request produced, and where."""

    images: tuple[ImageData, ...]
    server: str
    seed: int | None = None
    elapsed_s: float | None = None


@dataclass(frozen=True)
class ServerStatus:
    url: str
    alive: bool
    ready: bool
    detail: str = ""


@dataclass
class _Health:
    failures: int = 0
    down_until: float = 0.0


@dataclass
class _LoopState:
    pools: http.Pools  # this loop's connections
    cond: asyncio.Condition
    in_flight: dict[str, int]
    rr: int = 0
    served: dict[str, int] = field(default_factory=dict)


class ImageServerClient:
    """Talks to the servers at ``urls`` (a list or a comma-separated string).

    ``timeout`` bounds a whole call (waiting for a slot included) unless the call passes its
    own; ``max_response_bytes`` bounds one answer (base64 images).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        max_concurrency_per_server: int = 2,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        cooldown: float = 2.0,
        max_cooldown: float = 60.0,
        max_response_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.urls = parse_urls(urls)
        if not self.urls:
            raise ConfigError("no image server URL given")
        if max_concurrency_per_server < 1:
            raise ConfigError("max_concurrency_per_server must be at least 1")
        self.max_concurrency_per_server = max_concurrency_per_server
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_response_bytes = max_response_bytes
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._health = {url: _Health() for url in self.urls}
        self._health_lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, var: str = "QWEN_IMAGE_SERVER_URL", **kwargs: Any
    ) -> ImageServerClient:
        """A client for the URLs in ``env[var]`` (comma-separated)."""
        env = os.environ if env is None else env
        value = env.get(var, "")
        if not value.strip():
            raise ConfigError(f"set {var} to the image server URL(s), comma-separated")
        return cls(value, **kwargs)

    # --- per-loop state --------------------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = _LoopState(
                pools=http.Pools(len(self.urls) * self.max_concurrency_per_server + 8),
                cond=asyncio.Condition(),
                in_flight={url: 0 for url in self.urls},
            )
            self._loops[loop] = state
        return state

    async def aclose(self) -> None:
        """Close this loop's connections (other loops' are dropped with their loops)."""
        loop = asyncio.get_running_loop()
        state = self._loops.pop(loop, None)
        if state is not None:
            await state.pools.aclose()

    async def __aenter__(self) -> ImageServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- health marks (shared by every loop) -----------------------------------------------

    def _is_up(self, url: str, now: float) -> bool:
        return self._health[url].down_until <= now

    def _mark_down(self, url: str, seconds: float | None = None) -> None:
        with self._health_lock:
            h = self._health[url]
            h.failures += 1
            wait = seconds if seconds is not None else self.cooldown * 2 ** (h.failures - 1)
            h.down_until = time.monotonic() + min(wait, self.max_cooldown)

    def _mark_up(self, url: str) -> None:
        with self._health_lock:
            h = self._health[url]
            h.failures = 0
            h.down_until = 0.0

    def served_counts(self) -> dict[str, int]:
        """Requests answered per server by this client (on the current loop)."""
        return dict(self._state().served)

    # --- choosing a server -----------------------------------------------------------------

    async def _acquire(self, state: _LoopState, deadline: float) -> str:
        n = len(self.urls)
        async with state.cond:
            while True:
                now = time.monotonic()
                up = [u for u in self.urls if self._is_up(u, now)]
                free = [u for u in up if state.in_flight[u] < self.max_concurrency_per_server]
                if free:
                    order = {u: (i - state.rr) % n for i, u in enumerate(self.urls)}
                    url = min(free, key=lambda u: (state.in_flight[u], order[u]))
                    state.rr = (self.urls.index(url) + 1) % n
                    state.in_flight[url] += 1
                    return url
                if now >= deadline:
                    if not up:
                        raise BackendError(
                            f"no healthy image server among {', '.join(self.urls)}",
                            transient=True,
                        )
                    raise ToolTimeout("timed out waiting for a free image server slot")
                # Wake when a slot frees, or when the next server's cool-down ends.
                wake = min(
                    [self._health[u].down_until for u in self.urls if not self._is_up(u, now)]
                    + [deadline]
                )
                try:
                    await asyncio.wait_for(state.cond.wait(), timeout=max(0.01, wake - now))
                except TimeoutError:
                    pass

    async def _release(self, state: _LoopState, url: str) -> None:
        async with state.cond:
            state.in_flight[url] -= 1
            state.cond.notify_all()

    # --- one call ---------------------------------------------------------------------------

    async def _post(self, path: str, payload: dict[str, Any], timeout: float | None) -> ServerImages:
        # One POST, no retries: the caller owns them (the engine for tools, ``Retry`` elsewhere).
        # A server that fails is marked down, so the next attempt goes to another one.
        state = self._state()
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        url = await self._acquire(state, deadline)
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ToolTimeout(f"image server call ran out of time ({budget:.0f} s)")
            async with state.pools.client() as client:
                answer = await http.request(
                    _service(url), "POST", url + path, json=payload, timeout=remaining,
                    connect_timeout=min(self.connect_timeout, remaining),
                    max_bytes=self.max_response_bytes, client=client,
                )
        except LlmiError as exc:
            if _server_failed(exc):
                self._mark_down(url, exc.retry_after)
                now = time.monotonic()
                if any(self._is_up(u, now) for u in self.urls if u != url):
                    exc.retry_after = None  # that wait is this server's: the retry goes elsewhere now
            raise
        finally:
            await self._release(state, url)
        self._mark_up(url)
        state.served[url] = state.served.get(url, 0) + 1
        return await asyncio.to_thread(_parse_images, url, answer)

    # --- public API ------------------------------------------------------------------------

    async def generate_result(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        height: int = 1024,
        width: int = 1024,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        num_images_per_prompt: int = 1,
        seed: int | None = None,
        timeout: float | None = None,
    ) -> ServerImages:
        """``POST /generate/`` with the images and the server that made them."""
        payload: dict[str, Any] = {
            "prompt": prompt,
            "height": height,
            "width": width,
            "num_inference_steps": num_inference_steps,
            "num_images_per_prompt": num_images_per_prompt,
        }
        _put(payload, negative_prompt=negative_prompt, guidance_scale=guidance_scale, seed=seed)
        return await self._post("/generate/", payload, timeout)

    async def generate(self, prompt: str, **kwargs: Any) -> list[ImageData]:
        """Generate images for ``prompt``; keyword arguments as :meth:`generate_result`."""
        return list((await self.generate_result(prompt, **kwargs)).images)

    async def edit_result(
        self,
        image: ImageData,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float | None = None,
        num_images_per_prompt: int = 1,
        seed: int | None = None,
        height: int | None = None,
        width: int | None = None,
        timeout: float | None = None,
    ) -> ServerImages:
        """``POST /edit/``; ``image`` is flattened to RGB on white and sent as PNG."""
        try:
            png = await asyncio.to_thread(image.flattened)
        except Exception as exc:
            raise BackendError(f"the image to edit cannot be read: {exc}", transient=False) from exc
        payload: dict[str, Any] = {
            "image_b64": base64.b64encode(png.data).decode("ascii"),
            "prompt": prompt,
            "num_inference_steps": num_inference_steps,
            "num_images_per_prompt": num_images_per_prompt,
        }
        _put(
            payload,
            negative_prompt=negative_prompt,
            guidance_scale=guidance_scale,
            seed=seed,
            height=height,
            width=width,
        )
        return await self._post("/edit/", payload, timeout)

    async def edit(self, image: ImageData, prompt: str, **kwargs: Any) -> list[ImageData]:
        """Edit ``image`` following ``prompt``; keyword arguments as :meth:`edit_result`."""
        return list((await self.edit_result(image, prompt, **kwargs)).images)

    async def health(self, timeout: float = 5.0) -> list[ServerStatus]:
        """Probe every server's ``/health`` and ``/ready``; updates the health marks."""
        state = self._state()

        async def probe(url: str) -> ServerStatus:
            try:
                async with state.pools.client() as client:
                    await http.request(_service(url), "GET", url + "/health", timeout=timeout, client=client)
            except LlmiError as exc:
                self._mark_down(url)
                return ServerStatus(url, exc.status is not None and exc.status < 500, False, str(exc))
            try:
                async with state.pools.client() as client:
                    await http.request(_service(url), "GET", url + "/ready", timeout=timeout, client=client)
            except LlmiError as exc:
                self._mark_down(url, exc.retry_after)
                return ServerStatus(url, True, False, str(exc))
            self._mark_up(url)
            return ServerStatus(url, True, True, "ready")

        return list(await asyncio.gather(*(probe(u) for u in self.urls)))

    async def info(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every server's ``/info`` (``{"url": ..., "error": ...}`` for one that fails)."""
        state = self._state()

        async def one(url: str) -> dict[str, Any]:
            try:
                async with state.pools.client() as client:
                    answer = await http.request(_service(url), "GET", url + "/info", timeout=timeout, client=client)
                return {"url": url, **answer.json()}
            except LlmiError as exc:
                return {"url": url, "error": str(exc)}

        return list(await asyncio.gather(*(one(u) for u in self.urls)))


def _put(payload: dict[str, Any], **optional: Any) -> None:
    payload.update({k: v for k, v in optional.items() if v is not None})


def _service(url: str) -> http.Service:
    return http.Service(f"the image server at {url}")


def _server_failed(error: LlmiError) -> bool:
    """Whether ``error`` says the server (not the request) is in trouble: no answer, or a 5xx
    (a full queue and a loading model are 503s). A slow answer is the call's budget running
    out, not the server failing."""
    if isinstance(error, ToolTimeout):
        return False
    return error.status is None or error.status >= 500


def _parse_images(url: str, answer: http.Response) -> ServerImages:
    body = answer.json()
    encoded = body.get("images")
    if body.get("status", "success") != "success" or not isinstance(encoded, list) or not encoded:
        raise answer.service.malformed(f"no images in {str(body)[:300]}")
    try:
        images = tuple(ImageData.from_bytes(base64.b64decode(item, validate=True)) for item in encoded)
    except (ValueError, TypeError) as exc:
        raise answer.service.malformed(f"an image is not base64 of a picture ({exc})") from None
    seed = body.get("seed")
    elapsed = body.get("elapsed_s")
    return ServerImages(
        images, url, seed if isinstance(seed, int) else None, elapsed if isinstance(elapsed, (int, float)) else None
    )
