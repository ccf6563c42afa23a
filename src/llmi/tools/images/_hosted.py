"""HTTP code shared by the hosted image backends (Ark's Seedream/SeedEdit, OpenAI-compatible).

Private to ``images.ark`` and ``images.openai``. It does three things:

1. **Call**: one POST per attempt through :mod:`llmi.http`, the whole attempt bounded by the
   call's timeout; no retries here (the engine owns them).
2. **Classify**: every failure becomes an ``llmi.errors`` value as :mod:`llmi.http` maps it: a
   refused key says to check ``ARK_API_KEY`` / ``OPENAI_API_KEY``, a safety refusal is
   ``ContentRefused``, an exhausted quota is not transient, 429/5xx/resets are, and a 2xx body
   not in the documented format is "malformed response".
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
from types import EllipsisType
from typing import Any, ClassVar, Mapping

from ... import http
from ...env import env_flag
from ...errors import ConfigError, ContentRefused, FetchError, ToolTimeout
from ...fetch import FetchPolicy, SafeFetcher
from ...http import Service
from ...image import ImageData, flatten_to_rgb
from ..base import prompt_seed

__all__ = [
    "ContentRefused", "post_json", "post_multipart", "collect_images", "prepare_upload",
    "ARK_BASE_URL", "OPENAI_BASE_URL", "ArkImagesTool", "OpenAIImagesTool",
]

#: Volcengine Ark's endpoint (Beijing region); ``ARK_BASE_URL`` overrides it
ARK_BASE_URL = "https://ark.cn-beijing.volces.com/api/v3"
#: OpenAI's endpoint; ``LLMI_IMAGES_BASE_URL`` / ``OPENAI_BASE_URL`` override it
OPENAI_BASE_URL = "https://api.openai.com/v1"

async def post_json(
    service: Service, url: str, payload: Mapping[str, Any], *, api_key: str | None, timeout: float
) -> dict[str, Any]:
    """POST ``payload`` as JSON and return the decoded 2xx answer, or raise a classified error."""
    answer = await http.request(service, "POST", url, json=dict(payload), api_key=api_key, timeout=timeout)
    return answer.json()


async def post_multipart(
    service: Service,
    url: str,
    fields: Mapping[str, Any],
    files: Mapping[str, tuple[str, bytes, str]],
    *,
    api_key: str | None,
    timeout: float,
) -> dict[str, Any]:
    """POST a multipart form (``files``: name -> (filename, bytes, mime)); same errors as above."""
    data = {k: str(v) for k, v in fields.items() if v is not None}
    answer = await http.request(service, "POST", url, data=data, files=dict(files), api_key=api_key, timeout=timeout)
    return answer.json()


async def collect_images(
    spec: Service, body: Mapping[str, Any], *, fetcher: Any, limit: int = 1, deadline: float | None = None
) -> list[tuple[ImageData, str | None]]:
    """The images in an OpenAI-style ``{"data": [{"b64_json"|"url": ...}]}`` answer.

    Returns ``(image, url)`` pairs (``url`` is None for inline images), at most ``limit``.
    Downloads must finish by ``deadline`` (a ``time.monotonic()`` value), else ``ToolTimeout``.
    """
    items = body.get("data")
    if not isinstance(items, list) or not items:
        raise spec.malformed("no 'data' list of images")
    out: list[tuple[ImageData, str | None]] = []
    for item in items[:limit]:
        if not isinstance(item, dict):
            raise spec.malformed("'data' holds a non-object")
        if isinstance(item.get("b64_json"), str) and item["b64_json"]:
            out.append((_decode_b64(spec, item["b64_json"]), None))
        elif isinstance(item.get("url"), str) and item["url"]:
            left = None if deadline is None else max(0.05, deadline - time.monotonic())
            try:
                async with asyncio.timeout(left):
                    image = await fetcher.fetch(item["url"])
            except TimeoutError:
                raise ToolTimeout(f"downloading the image {spec.name} made ran past the call's timeout") from None
            except FetchError as exc:
                raise FetchError(f"{spec.name} returned an image URL that failed: {exc}", transient=exc.transient) from None
            out.append((image, item["url"]))
        else:
            raise spec.malformed("an image has neither 'b64_json' nor 'url'")
    return out


def _decode_b64(spec: Service, text: str) -> ImageData:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise spec.malformed("'b64_json' is not valid base64") from None
    try:
        return ImageData.from_bytes(raw)
    except ValueError as exc:
        raise spec.malformed(f"'b64_json' is not an image ({exc})") from None


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

    original = image.to_pil()
    im = flatten_to_rgb(original)
    changes: dict[str, Any] = {}
    if "A" in original.getbands() or "transparency" in original.info:
        changes["flattened"] = True
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


class ArkImagesTool:
    """What Seedream and SeedEdit share: checked settings and one ``/images/generations`` call.

    Subclasses set ``_name`` (``"Seedream"``), used in messages, their default model and
    guidance, and build the request fields that differ. ``guidance_scale=None`` sends none (the
    model's own default); ``seed=None`` derives one from the prompt. No request is made until
    ``run``.
    """

    _name: ClassVar[str]
    _model: ClassVar[str]
    _guidance: ClassVar[float]

    def __init__(
        self,
        api_key: str,
        *,
        model: str | None = None,
        base_url: str = ARK_BASE_URL,
        guidance_scale: float | None | EllipsisType = ...,
        seed: int | None = None,
        watermark: bool = True,
        response_format: str = "b64_json",
        fetch_policy: FetchPolicy | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError(f"{self._name} needs an API key: set ARK_API_KEY")
        if response_format not in ("url", "b64_json"):
            raise ConfigError(f"response_format must be 'url' or 'b64_json', not {response_format!r}")
        self._api_key = api_key
        self.model = model or self._model
        self.base_url = base_url.rstrip("/")
        self.guidance_scale = self._guidance if guidance_scale is ... else guidance_scale
        self.seed = seed
        self.watermark = watermark
        self.response_format = response_format
        self._fetcher = SafeFetcher(fetch_policy)
        self._spec = Service(f"Volcengine Ark ({self._name})", key_hint="ARK_API_KEY")

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> str | None:
        return "ARK_API_KEY is set" if (env.get("ARK_API_KEY") or "").strip() else None

    @staticmethod
    def env_settings(env: Mapping[str, str]) -> dict[str, Any]:
        """``ARK_API_KEY``, ``ARK_BASE_URL`` and ``LLMI_ARK_WATERMARK`` as constructor arguments.

        >>> ArkImagesTool.env_settings({"ARK_API_KEY": "k", "LLMI_ARK_WATERMARK": "0"})["watermark"]
        False
        """
        return {
            "api_key": env.get("ARK_API_KEY", ""),
            "base_url": env.get("ARK_BASE_URL") or ARK_BASE_URL,
            "watermark": env_flag(env, "LLMI_ARK_WATERMARK", True),
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
        seed = self.seed if self.seed is not None else prompt_seed(prompt)
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

    Subclasses set ``_api_name`` (``"images API"``), used in messages, and their default
    ``_model`` and ``_size`` (``None``: not sent).
    """

    _api_name: ClassVar[str]
    _model: ClassVar[str] = "gpt-image-1"
    _size: ClassVar[str | None]

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = OPENAI_BASE_URL,
        model: str | None = None,
        size: str | None | EllipsisType = ...,
        response_format: str | None = None,
        fetch_policy: FetchPolicy | None = None,
    ) -> None:
        base_url = base_url.rstrip("/")
        if not api_key and base_url == OPENAI_BASE_URL:
            raise ConfigError("the OpenAI images API needs a key: set OPENAI_API_KEY (or LLMI_IMAGES_API_KEY)")
        if response_format not in (None, "url", "b64_json"):
            raise ConfigError(f"response_format must be 'url', 'b64_json' or unset, not {response_format!r}")
        self._api_key = api_key or None
        self.base_url = base_url
        self.model = model or self._model
        self.size = self._size if size is ... else size
        self.response_format = response_format
        self._fetcher = SafeFetcher(fetch_policy)
        self._spec = Service(f"the {self._api_name}", key_hint="OPENAI_API_KEY (or LLMI_IMAGES_API_KEY)")

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> str | None:
        """An images API is asked for by ``LLMI_IMAGES_BASE_URL`` / ``LLMI_IMAGES_API_KEY``, or by
        ``OPENAI_API_KEY`` without an ``OPENAI_BASE_URL`` pointing elsewhere: that variable often
        names the writer model's server, which has no images API.

        >>> OpenAIImagesTool.configured({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"}) is None
        True
        """
        for var in ("LLMI_IMAGES_BASE_URL", "LLMI_IMAGES_API_KEY"):
            if (env.get(var) or "").strip():
                return f"{var} is set"
        base = (env.get("OPENAI_BASE_URL") or "").strip().rstrip("/")
        if (env.get("OPENAI_API_KEY") or "").strip() and base in ("", OPENAI_BASE_URL):
            return "OPENAI_API_KEY is set (OpenAI's images API)"
        return None

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
