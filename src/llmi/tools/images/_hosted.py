"""HTTP code shared by the hosted image backends (Ark's Seedream/SeedEdit, OpenAI-compatible).

Private to ``images.ark`` and ``images.openai``. It does three things:

1. **Call**: one POST per attempt, with a fresh ``httpx.AsyncClient`` (nothing bound to an event
   loop survives a call), the whole attempt bounded by the call's timeout.
2. **Classify**: every failure becomes an ``llmi.errors`` value in one place —

   ==========================================  =====================================  =========
   what happened                               raised                                 transient
   ==========================================  =====================================  =========
   401 / 403                                   ``BackendError`` "check <KEY_VAR>"     no
   quota or billing exhausted (any status)     ``BackendError``                       no
   429, 5xx, connection refused/reset          ``BackendError``                       yes
   the call ran past its timeout               ``ToolTimeout``                        yes
   the provider's safety filter refused        ``ContentRefused``                     no
   any other 4xx                               ``BackendError`` with the API message  no
   2xx with a body that is not the format      ``BackendError`` "malformed response"  no
   ==========================================  =====================================  =========

3. **Collect**: ``data[i].b64_json`` is decoded, ``data[i].url`` is downloaded through
   ``llmi.fetch.SafeFetcher`` (so a provider cannot point llmi at a private address), and the
   result must decode as an image.

Uploads are prepared by :func:`prepare_upload`: transparency is composited onto white (an RGBA
chart would otherwise upload as a black or masked picture), very large pictures are scaled down,
and the bytes are PNG, or JPEG when PNG would exceed the provider's size limit.

Two base classes hold what each pair of backends shares (settings, their checks, the variables
``from_env`` reads, the call): :class:`ArkImagesTool` for Seedream and SeedEdit,
:class:`OpenAIImagesTool` for the OpenAI-compatible generations and edits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import time
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import httpx

from ...errors import BackendError, ConfigError, ContentRefused, FetchError, ToolTimeout
from ...fetch import FetchPolicy, SafeFetcher
from ...image import ImageData

__all__ = [
    "ContentRefused", "ApiSpec", "post_json", "post_multipart", "collect_images", "prepare_upload",
    "data_url", "default_seed", "env_flag", "MAX_RESPONSE_BYTES", "ARK_BASE_URL", "OPENAI_BASE_URL",
    "ArkImagesTool", "OpenAIImagesTool",
]

#: Volcengine Ark's endpoint (Beijing region); ``ARK_BASE_URL`` overrides it
ARK_BASE_URL = "https://ark.cn-beijing.volces.com/api/v3"
#: OpenAI's endpoint; ``LLMI_IMAGES_BASE_URL`` / ``OPENAI_BASE_URL`` override it
OPENAI_BASE_URL = "https://api.openai.com/v1"

#: a JSON answer larger than this is refused (b64 images of a few MB are normal)
MAX_RESPONSE_BYTES = 80 * 1024 * 1024

# error codes/types providers use for safety refusals (Ark: *SensitiveContentDetected*,
# *RiskDetection*; OpenAI: content_policy_violation, moderation_blocked)
_REFUSAL_MARKERS = ("sensitivecontent", "riskdetection", "content_policy", "moderation", "safety")


@dataclass(frozen=True)
class ApiSpec:
    """Who is being called, for messages: a label and the variable that holds its key."""

    label: str  # "Volcengine Ark (Seedream)"
    key_var: str  # "ARK_API_KEY"


async def post_json(
    spec: ApiSpec, url: str, payload: Mapping[str, Any], *, api_key: str | None, timeout: float
) -> dict[str, Any]:
    """POST ``payload`` as JSON and return the decoded 2xx answer, or raise a classified error."""
    return await _post(spec, url, {"json": dict(payload)}, api_key=api_key, timeout=timeout)


async def post_multipart(
    spec: ApiSpec,
    url: str,
    fields: Mapping[str, Any],
    files: Mapping[str, tuple[str, bytes, str]],
    *,
    api_key: str | None,
    timeout: float,
) -> dict[str, Any]:
    """POST a multipart form (``files``: name -> (filename, bytes, mime)); same errors as above."""
    data = {k: str(v) for k, v in fields.items() if v is not None}
    return await _post(spec, url, {"data": data, "files": dict(files)}, api_key=api_key, timeout=timeout)


async def _post(
    spec: ApiSpec, url: str, body: dict[str, Any], *, api_key: str | None, timeout: float
) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    # connect separately bounded so a dead host fails fast; the whole attempt by ``timeout``
    limits = httpx.Timeout(timeout, connect=min(10.0, timeout))
    try:
        async with asyncio.timeout(timeout):
            async with httpx.AsyncClient(timeout=limits, trust_env=False, follow_redirects=False) as client:
                response = await client.post(url, headers=headers, **body)
                content = response.content
    except (TimeoutError, httpx.TimeoutException):
        raise ToolTimeout(f"{spec.label} did not answer within {timeout:g} s ({url})") from None
    except httpx.TransportError as exc:  # refused, reset, DNS, protocol errors
        raise BackendError(
            f"cannot reach {spec.label} at {url}: {type(exc).__name__}: {exc}", transient=True
        ) from None
    if len(content) > MAX_RESPONSE_BYTES:
        raise BackendError(f"{spec.label} answered with {len(content)} bytes, over the limit")
    if response.is_success:
        try:
            parsed = response.json()
        except ValueError:
            raise BackendError(
                f"malformed response from {spec.label}: not JSON ({_snippet(content)})"
            ) from None
        if not isinstance(parsed, dict):
            raise BackendError(f"malformed response from {spec.label}: expected a JSON object")
        if parsed.get("error"):  # some gateways answer 200 with an error object
            raise _classify(spec, response.status_code, parsed, response.headers)
        return parsed
    try:
        parsed = response.json()
    except ValueError:
        parsed = {"error": {"message": _snippet(content)}}
    raise _classify(spec, response.status_code, parsed if isinstance(parsed, dict) else {}, response.headers)


def _classify(spec: ApiSpec, status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> BackendError:
    err = body.get("error") if isinstance(body.get("error"), dict) else {}
    code = str(err.get("code") or err.get("type") or "")
    message = str(err.get("message") or body.get("message") or body.get("detail") or "")
    what = f"{spec.label} answered HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status in (401, 403):
        return BackendError(f"{what} — check {spec.key_var} (the key is missing, wrong or lacks access)")
    if any(marker in (code + " " + message).lower() for marker in _REFUSAL_MARKERS):
        return ContentRefused(f"{what} — the provider's content filter refused; change the prompt or image")
    if "quota" in code.lower() or "overdue" in code.lower():  # billing, not load: retrying will not help
        return BackendError(f"{what} — the account behind {spec.key_var} has no quota or credit left")
    if status == 429 or status >= 500:
        retry = headers.get("retry-after")
        return BackendError(what + (f" (retry after {retry} s)" if retry else ""), transient=True)
    return BackendError(what)


async def collect_images(
    spec: ApiSpec, body: Mapping[str, Any], *, fetcher: Any, limit: int = 1, deadline: float | None = None
) -> list[tuple[ImageData, str | None]]:
    """The images in an OpenAI-style ``{"data": [{"b64_json"|"url": ...}]}`` answer.

    Returns ``(image, url)`` pairs (``url`` is None for inline images), at most ``limit``.
    Downloads must finish by ``deadline`` (a ``time.monotonic()`` value), else ``ToolTimeout``.
    """
    items = body.get("data")
    if not isinstance(items, list) or not items:
        raise BackendError(f"malformed response from {spec.label}: no 'data' list of images")
    out: list[tuple[ImageData, str | None]] = []
    for item in items[:limit]:
        if not isinstance(item, dict):
            raise BackendError(f"malformed response from {spec.label}: 'data' holds a non-object")
        if isinstance(item.get("b64_json"), str) and item["b64_json"]:
            out.append((_decode_b64(spec, item["b64_json"]), None))
        elif isinstance(item.get("url"), str) and item["url"]:
            left = None if deadline is None else max(0.05, deadline - time.monotonic())
            try:
                async with asyncio.timeout(left):
                    image = await fetcher.fetch(item["url"])
            except TimeoutError:
                raise ToolTimeout(f"downloading the image {spec.label} made ran past the call's timeout") from None
            except FetchError as exc:
                raise FetchError(f"{spec.label} returned an image URL that failed: {exc}", transient=exc.transient) from None
            out.append((image, item["url"]))
        else:
            raise BackendError(f"malformed response from {spec.label}: an image has neither 'b64_json' nor 'url'")
    return out


def _decode_b64(spec: ApiSpec, text: str) -> ImageData:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BackendError(f"malformed response from {spec.label}: 'b64_json' is not valid base64") from None
    try:
        return ImageData.from_bytes(raw)
    except ValueError as exc:
        raise BackendError(f"malformed response from {spec.label}: 'b64_json' is not an image ({exc})") from None


def prepare_upload(
    image: ImageData, *, max_side: int = 4096, max_bytes: int = 10 * 1024 * 1024, min_side: int = 16,
    max_aspect: float | None = None,
) -> tuple[ImageData, dict[str, Any]]:
    """``image`` made safe to upload: RGB on white, within size limits, PNG (or JPEG if too big).

    Returns the upload and a record of what was changed (for ``ToolOutput.info``).

    >>> from PIL import Image
    >>> rgba = ImageData.from_pil(Image.new("RGBA", (40, 30), (255, 0, 0, 0)))
    >>> up, changes = prepare_upload(rgba)
    >>> (up.format, up.to_pil().mode, up.to_pil().getpixel((0, 0)), changes["flattened"])
    ('png', 'RGB', (255, 255, 255), True)
    """
    from PIL import Image

    im = image.to_pil()
    changes: dict[str, Any] = {}
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        changes["flattened"] = True
    elif im.mode != "RGB":
        im = im.convert("RGB")
    if max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
        changes["downscaled_to"] = list(im.size)
    if min(im.size) < min_side:
        scale = min_side / min(im.size)
        im = im.resize((max(min_side, round(im.width * scale)), max(min_side, round(im.height * scale))), Image.Resampling.NEAREST)
        changes["upscaled_to"] = list(im.size)
    if max_aspect is not None:
        w, h = im.size
        if w / h > max_aspect or h / w > max_aspect:
            # pad with white to the provider's ratio limit rather than distort the picture
            nw, nh = max(w, int(h / max_aspect) + 1), max(h, int(w / max_aspect) + 1)
            canvas = Image.new("RGB", (nw, nh), (255, 255, 255))
            canvas.paste(im, ((nw - w) // 2, (nh - h) // 2))
            im = canvas
            changes["padded_to"] = [nw, nh]
    upload = ImageData.from_pil(im, "png")
    if len(upload.data) > max_bytes:
        for quality in (92, 85, 75, 60):
            upload = _jpeg(im, quality)
            if len(upload.data) <= max_bytes:
                break
        changes["encoded_as"] = f"jpeg q{quality}"
    return upload, changes


def _jpeg(im: Any, quality: int) -> ImageData:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return ImageData(buf.getvalue(), im.width, im.height, "jpeg")


def data_url(image: ImageData) -> str:
    """``data:image/<fmt>;base64,...`` — the form Ark accepts for an inline input image."""
    return f"data:{image.mime};base64," + base64.b64encode(image.data).decode("ascii")


def default_seed(prompt: str) -> int:
    """A seed derived from the prompt: reproducible runs without every image sharing one seed.

    >>> default_seed("a cat") == default_seed("a cat") != default_seed("a dog")
    True
    """
    return zlib.crc32(prompt.encode("utf-8")) & 0x7FFFFFFF


def env_flag(value: str | None, default: bool) -> bool:
    """An on/off environment setting: ``0``, ``false``, ``no``, ``off`` are off; empty is ``default``."""
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _snippet(content: bytes, limit: int = 120) -> str:
    text = content[:limit].decode("utf-8", "replace").strip()
    return repr(text + ("..." if len(content) > limit else ""))


class ArkImagesTool:
    """What Seedream and SeedEdit share: checked settings and one ``/images/generations`` call.

    Subclasses set ``_name`` (``"Seedream"``), used in messages, and build the request fields
    that differ. No request is made until ``run``.
    """

    _name: ClassVar[str]

    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        base_url: str,
        guidance_scale: float | None,
        seed: int | None,
        watermark: bool,
        response_format: str,
        fetch_policy: FetchPolicy | None,
    ) -> None:
        if not api_key:
            raise ConfigError(f"{self._name} needs an API key: set ARK_API_KEY")
        if response_format not in ("url", "b64_json"):
            raise ConfigError(f"response_format must be 'url' or 'b64_json', not {response_format!r}")
        self._api_key = api_key
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.guidance_scale = guidance_scale
        self.seed = seed
        self.watermark = watermark
        self.response_format = response_format
        self._fetcher = SafeFetcher(fetch_policy)
        self._spec = ApiSpec(f"Volcengine Ark ({self._name})", "ARK_API_KEY")

    @staticmethod
    def env_settings(env: Mapping[str, str]) -> dict[str, Any]:
        """``ARK_API_KEY``, ``ARK_BASE_URL`` and ``LLMI_ARK_WATERMARK`` as constructor arguments.

        >>> ArkImagesTool.env_settings({"ARK_API_KEY": "k", "LLMI_ARK_WATERMARK": "0"})["watermark"]
        False
        """
        return {
            "api_key": env.get("ARK_API_KEY", ""),
            "base_url": env.get("ARK_BASE_URL") or ARK_BASE_URL,
            "watermark": env_flag(env.get("LLMI_ARK_WATERMARK"), True),
        }

    async def generate(
        self, call: Any, fields: Mapping[str, Any], *, deadline: float | None = None, **details: Any
    ) -> tuple[ImageData, str | None, dict[str, Any]]:
        """One call for ``call``'s prompt: ``model``, ``prompt``, then ``fields``, then the seed
        (derived from the prompt unless set), watermark and guidance.

        Returns the image, its URL when it was downloaded, and ``info`` (model, seed,
        ``details``, guidance). ``deadline`` (``time.monotonic()``) defaults to now plus the
        call's timeout.
        """
        if deadline is None:
            deadline = time.monotonic() + call.timeout
        prompt = call.request.prompt
        seed = self.seed if self.seed is not None else default_seed(prompt)
        payload: dict[str, Any] = {
            "model": self.model, "prompt": prompt, **fields,
            "seed": seed, "watermark": self.watermark,
        }
        if self.guidance_scale is not None:
            payload["guidance_scale"] = self.guidance_scale
        body = await post_json(
            self._spec, f"{self.base_url}/images/generations", payload, api_key=self._api_key, timeout=call.timeout
        )
        [(image, url)] = await collect_images(self._spec, body, fetcher=self._fetcher, deadline=deadline)
        model = str(body.get("model") or self.model)
        info: dict[str, Any] = {"model": model, "seed": seed, **details}
        if self.guidance_scale is not None:
            info["guidance_scale"] = self.guidance_scale
        return image, url, info

    async def aclose(self) -> None:
        return None  # nothing is held between calls


class OpenAIImagesTool:
    """What the OpenAI-compatible backends share: checked settings and reading the answer.

    Subclasses set ``_api_name`` (``"images API"``), used in messages.
    """

    _api_name: ClassVar[str]

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str,
        model: str,
        size: str | None,
        response_format: str | None,
        fetch_policy: FetchPolicy | None,
    ) -> None:
        base_url = base_url.rstrip("/")
        if not api_key and base_url == OPENAI_BASE_URL:
            raise ConfigError("the OpenAI images API needs a key: set OPENAI_API_KEY (or LLMI_IMAGES_API_KEY)")
        if response_format not in (None, "url", "b64_json"):
            raise ConfigError(f"response_format must be 'url', 'b64_json' or unset, not {response_format!r}")
        self._api_key = api_key or None
        self.base_url = base_url
        self.model = model
        self.size = size
        self.response_format = response_format
        self._fetcher = SafeFetcher(fetch_policy)
        self._spec = ApiSpec(f"the {self._api_name} at {self.base_url}", "OPENAI_API_KEY (or LLMI_IMAGES_API_KEY)")

    @staticmethod
    def env_settings(env: Mapping[str, str]) -> dict[str, Any]:
        """The key, base URL and response format from ``env``, as constructor arguments.

        >>> OpenAIImagesTool.env_settings({"OPENAI_API_KEY": "a", "LLMI_IMAGES_API_KEY": "b"})["api_key"]
        'b'
        """
        return {
            "api_key": env.get("LLMI_IMAGES_API_KEY") or env.get("OPENAI_API_KEY"),
            "base_url": env.get("LLMI_IMAGES_BASE_URL") or env.get("OPENAI_BASE_URL") or OPENAI_BASE_URL,
            "response_format": env.get("LLMI_IMAGES_RESPONSE_FORMAT") or None,
        }

    async def collect(
        self, body: Mapping[str, Any], deadline: float
    ) -> tuple[ImageData, str | None, dict[str, Any]]:
        """The one image in ``body``, its URL if it was downloaded, and ``info`` (model, base URL)."""
        [(image, url)] = await collect_images(self._spec, body, fetcher=self._fetcher, deadline=deadline)
        return image, url, {"model": self.model, "base_url": self.base_url}

    async def aclose(self) -> None:
        return None
