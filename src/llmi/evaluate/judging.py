"""What the benchmark judges share: the conversation they are sent and how a reply is read.

A benchmark judge is an OpenAI-compatible chat model asked for one JSON object. The call
itself (limits, retries, structured output) belongs to the judge client of ``llmi.rewards``;
this module turns a benchmark's prompt and an answer's text and pictures into chat content,
with each picture where it appears, and reads the JSON back out of the reply.

A judge that cannot see pictures (``images=False``: a text-only model) gets the same
conversation as plain text, each picture left as its marker, so it still knows one was there.

>>> from llmi.image import ImageData
>>> pieces = split_at_images("Owls <image> hunt.", [ImageData.blank(4, 4)])
>>> [type(p).__name__ for p in pieces]
['str', 'ImageData', 'str']
>>> content(pieces, images=False)
'Owls <image> hunt.'
>>> [p["type"] for p in content(pieces)]
['text', 'image_url', 'text']
>>> reply_object('Sure! ```json\\n{"score": 2, "justification": "ok"}\\n```')
{'score': 2, 'justification': 'ok'}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, Union, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageData

__all__ = ["IMAGE_TOKEN", "BenchJudge", "ClientJudge", "JudgeAnswer", "Piece", "SchemaReply", "make_judge", "content", "fill", "image_part", "prompt_text", "reply_object", "split_at_images"]

IMAGE_TOKEN = "<image>"
#: one piece of a message: text, or a picture shown at that place
Piece = Union[str, "ImageData"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_THINK = re.compile(r"<think>.*?</think>", re.S)
_MAX_STARTS = 64


@dataclass(frozen=True)
class JudgeAnswer:
    """A judge's reply: the JSON object read from it (``None`` if it held none), its text and
    the seconds the call took."""

    data: dict[str, Any] | None
    text: str
    seconds: float = 0.0


@runtime_checkable
class BenchJudge(Protocol):
    """A judge a benchmark asks for one JSON object per call.

    ``images`` says whether the judge may be shown pictures. ``ask`` raises an ``LlmiError``
    (``JudgeError``) when it gets no reply at all; a reply without the JSON asked for is an
    answer with ``data=None``.
    """

    name: str
    images: bool

    async def ask(self, system: str, user: str | list[dict[str, Any]], *, schema: Mapping[str, Any],
                  seed: int | None = None) -> JudgeAnswer: ...

    def describe(self) -> dict[str, Any]: ...


def split_at_images(text: str, images: Sequence["ImageData"]) -> list[Piece]:
    """``text`` cut at each ``<image>``, the i-th picture put in the i-th cut; markers beyond
    the pictures stay text."""
    parts = text.split(IMAGE_TOKEN)
    out: list[Piece] = []
    for i, part in enumerate(parts):
        if part:
            out.append(part)
        if i < len(parts) - 1:
            out.append(images[i] if i < len(images) else IMAGE_TOKEN)
    return out


def fill(template: str, **fields: str | Sequence[Piece]) -> list[Piece]:
    """``template`` (``str.format`` syntax) with each field replaced by its text or its pieces.

    >>> fill("Q: {q}\\nA: {a}{{}}", q="Why?", a=["Because ", "<image>"])
    ['Q: ', 'Why?', '\\nA: ', 'Because ', '<image>', '{', '}']
    """
    import string

    out: list[Piece] = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        if literal:
            out.append(literal)
        if name is None:
            continue
        value = fields[name]
        if isinstance(value, str):
            out.append(value)
        else:
            out.extend(value)
    return out


def prompt_text(name: str) -> str:
    """One of the benchmark judges' prompt files (package data in ``llmi/evaluate/prompts``)."""
    from importlib import resources

    return resources.files("llmi.evaluate").joinpath("prompts", name).read_text(encoding="utf-8")


def image_part(image: "ImageData", *, size: tuple[int, int] | None = None, max_pixels: int | None = None) -> dict[str, Any]:
    """An inline RGB JPEG for ``image``, resized to ``size`` exactly (OpenING shows its judges
    512×512 pictures) or shrunk to at most ``max_pixels``."""
    return {"type": "image_url", "image_url": {"url": image.to_jpeg(size=size, max_pixels=max_pixels).data_url}}


def content(pieces: Sequence[Piece], *, images: bool = True, marker: str = IMAGE_TOKEN,
            size: tuple[int, int] | None = None, max_pixels: int | None = 1_048_576) -> str | list[dict[str, Any]]:
    """Chat content for ``pieces``: a list of text and image parts, or, when ``images`` is off or
    there is no picture, one string in which each picture is ``marker``."""
    from ..image import ImageData

    if not images or not any(isinstance(p, ImageData) for p in pieces):
        return "".join(marker if isinstance(p, ImageData) else p for p in pieces)
    out: list[dict[str, Any]] = []
    for p in pieces:
        if isinstance(p, ImageData):
            out.append(image_part(p, size=size, max_pixels=max_pixels))
        elif out and out[-1]["type"] == "text":
            out[-1]["text"] += p
        else:
            out.append({"type": "text", "text": p})
    return out


def reply_object(text: str) -> dict[str, Any] | None:
    """The JSON object in a judge's reply: the whole reply, a fenced block, or the first
    ``{...}`` in it (after any ``<think>`` block); ``None`` if there is none.

    >>> reply_object('<think>hmm {"x": 1}</think> The verdict: {"verdict": "A is better"}.')
    {'verdict': 'A is better'}
    >>> reply_object("no json here") is None, reply_object("[" * 100_000) is None, reply_object('{"a":' * 100_000)
    (True, True, None)
    >>> reply_object('{"score": 1, "justification": "line one\\nline two"}')["score"]  # a raw newline in a string
    1
    """
    text = _THINK.sub("", text or "").strip()
    # strict=False: small models put raw newlines inside strings, which is the only flaw of many replies
    decoder = json.JSONDecoder(strict=False)
    candidates = [text, *(m.group(1) for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            data = decoder.decode(candidate)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; nesting bombs recurse
            continue
        if isinstance(data, dict):
            return data
    for n, m in enumerate(re.finditer(r"\{", text)):
        if n >= _MAX_STARTS:  # a reply of nothing but openers must not take minutes to give up on
            break
        try:
            data, _ = decoder.raw_decode(text, m.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            return data
    return None


# -- the judge itself: the rewards judge client with a benchmark's reply schema --------------------


@dataclass(frozen=True)
class SchemaReply:
    """A reply format given as a JSON schema, in the shape the judge client constrains replies
    with (``name``, ``schema()``, ``grammar()``)."""

    name: str
    json_schema: Mapping[str, Any]

    def schema(self) -> dict[str, Any]:
        return dict(self.json_schema)

    def grammar(self, *, lines: bool = False) -> str:
        """GBNF for the schema (llama.cpp's converter), for servers that take only a grammar."""
        try:
            from llama_cpp.llama_grammar import json_schema_to_gbnf
        except ImportError:  # without llama-cpp-python: any JSON object, read leniently afterwards
            return _ANY_OBJECT
        return json_schema_to_gbnf(json.dumps(self.json_schema))


_ANY_OBJECT = r'''root ::= "{" ws ( member ( ws "," ws member )* )? ws "}"
member ::= string ws ":" ws value
value ::= string | number | "true" | "false" | "null" | root | "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt] )* "\""
number ::= "-"? [0-9]+ ( "." [0-9]+ )?
ws ::= [ \t\n]*'''


class ClientJudge:
    """A ``BenchJudge`` over the rewards ``JudgeClient``: temperature 0 by default (as LLM-I's
    rubric judge), the benchmark's schema as the reply constraint, the item's seed."""

    def __init__(self, client: Any, *, images: bool = True, temperature: float = 0.0, max_tokens: int = 512) -> None:
        self.client = client
        self.images = images
        self.temperature = temperature
        self.max_tokens = max_tokens
        #: the model that actually answered (the endpoint's only model when none was named)
        self.served_model: str | None = None

    @property
    def name(self) -> str:
        return self.client.name

    async def ask(self, system: str, user: str | list[dict[str, Any]], *, schema: Mapping[str, Any],
                  seed: int | None = None) -> JudgeAnswer:
        from ..rewards.judge_client import JudgeSampling

        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        reply = await self.client.complete(
            messages, reply=SchemaReply(str(schema.get("title") or "benchmark_reply"), schema),
            sampling=JudgeSampling(temperature=self.temperature, max_tokens=self.max_tokens, seed=seed),
        )
        self.served_model = reply.model
        return JudgeAnswer(reply_object(reply.text), reply.text, reply.latency)

    def describe(self) -> dict[str, Any]:
        limits = self.client.limits
        return {"model": self.client.model, "base_url": self.client.base_url, "images": self.images,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "limits": {"concurrency": limits.concurrency, "rpm": limits.rpm, "timeout": limits.timeout,
                           "retries": limits.retries}}

    async def aclose(self) -> None:
        await self.client.aclose()


def make_judge(base_url: str, *, model: str | None = None, api_key: str | None = None, images: bool = True,
               concurrency: int = 8, rpm: float | None = None, timeout: float = 120.0, retries: int = 3,
               backoff: float = 1.0, temperature: float = 0.0, max_tokens: int = 512) -> ClientJudge:
    """The benchmark judge behind an OpenAI-compatible endpoint (retries transient errors
    ``retries`` times, waiting ``backoff · 2^k`` seconds or the server's ``Retry-After``)."""
    from ..rewards.judge_client import JudgeClient
    from ..rewards.limits import JudgeLimits

    limits = JudgeLimits(concurrency=concurrency, rpm=rpm, timeout=timeout, retries=retries, backoff=backoff)
    client = JudgeClient(base_url, model=model, api_key=api_key, limits=limits, label="benchmark judge")
    return ClientJudge(client, images=images, temperature=temperature, max_tokens=max_tokens)
