"""One training item: a prompt, its input images and what the reward needs, checked row by row.

An item becomes one row of verl's parquet layout (``TrainingItem.to_record``)::

    data_source   "interleaved" (text) or "interleaved_mm" (input images)
    prompt        chat turns; the system turn is the writer's system prompt, and each input
                  image stands as an ``<image>`` placeholder in the text
    images        [{"bytes": PNG/JPEG bytes, "max_pixels": N}, ...]
    reward_model  {"style": "rule", "ground_truth": ""}   (verl's reward loop reads it)
    extra_info    {"split", "index", "image_num", "tools", "question"}

Rows are read from two shapes: a *flat* row (``prompt`` as text or chat turns, or ``question``;
optional ``image_num``, ``tools``, ``images``, ``split``) or a row already in the layout above
(with ``extra_info``). Every problem is a ``DataError`` naming the row and the reason.

>>> rules = RowRules(system_prompt="Write with pictures.")
>>> item = read_item_sync({"prompt": "Tell me about owls.", "tools": "search"}, 1, rules)
>>> [(t.role, t.content) for t in item.prompt]
[('system', 'Write with pictures.'), ('user', 'Tell me about owls.')]
>>> item.record(0)["extra_info"]
{'split': 'train', 'index': 0, 'image_num': 99, 'tools': ['search'], 'question': 'Tell me about owls.'}
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from ..errors import DataError, FetchError, WriterError
from ..image import ImageData
from ..llm.base import Message
from ..tags import SOURCES

__all__ = [
    "DEFAULT_IMAGE_NUM",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_TOKEN",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "RowRules",
    "SPLITS",
    "TrainingItem",
    "dummy_image",
    "read_item",
    "read_item_sync",
]

IMAGE_TOKEN = "<image>"
SPLITS = ("train", "test")
#: "at least one image": the default for rows that do not say how many they want
DEFAULT_IMAGE_NUM = 99
#: LLM-I's vision recipe shows the model each input image at no more than 1024 x 1024 pixels
DEFAULT_MAX_PIXELS = 1024 * 1024
#: input images larger than this (encoded, or in pixels) are refused: no decompression bombs
MAX_IMAGE_BYTES = 32 * 2**20
MAX_IMAGE_PIXELS = 40_000_000
_IMAGE_NUM_HELP = "-1 (no image), 0 (any number), 99 (at least one) or N > 0 (exactly N)"
_ROLES = ("system", "user", "assistant")
_FLAT_KEYS = {"prompt", "question", "image_num", "tools", "images", "split", "data_source", "id"}


@dataclass(frozen=True)
class RowRules:
    """How rows are turned into items.

    ``system_prompt`` replaces the dataset's own system turn (LLM-I's rule: a plain prompt
    becomes [system, user]; chat turns get one inserted, or their single leading system turn
    replaced); ``None`` keeps the turns as they are. ``image_num`` is used for rows that do not
    give one. ``dummy_image`` adds LLM-I's 28 x 28 white input image to text rows, as its
    vision recipe does so that text and image rows share one schema (their generated images
    then start at index 1). ``base_dir`` anchors relative image paths; ``None`` refuses local
    paths altogether (rows from the hub must not make llmi read this machine's files).
    ``max_pixels`` is how large verl shows each input image to the model.
    """

    system_prompt: str | None = None
    image_num: int = DEFAULT_IMAGE_NUM
    dummy_image: bool = False
    base_dir: Path | None = Path(".")
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class TrainingItem:
    """One checked prompt with its reward metadata (see the module docstring)."""

    prompt: tuple[Message, ...]
    images: tuple[ImageData, ...] = ()
    image_num: int = DEFAULT_IMAGE_NUM
    tools: tuple[str, ...] = ()
    question: str = ""
    split: str | None = None  # None: not given; ``prepare`` assigns one
    dummy_image: bool = False
    row: int = 0  # the 1-based row it was read from
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def modality(self) -> str:
        """``multimodal`` when the user gave images (a dummy image does not count)."""
        return "multimodal" if self.images and not self.dummy_image else "text"

    @property
    def data_source(self) -> str:
        return "interleaved_mm" if self.modality == "multimodal" else "interleaved"

    def record(self, index: int) -> dict[str, Any]:
        """The parquet row (verl's layout) for this item at position ``index`` of its split."""
        return {
            "data_source": self.data_source,
            "prompt": [{"role": t.role, "content": t.content} for t in self.prompt],
            "images": [{"bytes": img.data, "max_pixels": self.max_pixels} for img in self.images],
            "reward_model": {"style": "rule", "ground_truth": ""},
            "extra_info": {
                "split": self.split or "train",
                "index": index,
                "image_num": self.image_num,
                "tools": list(self.tools),
                "question": self.question,
            },
        }


def dummy_image() -> ImageData:
    """LLM-I's placeholder input for text rows in multimodal training: 28 x 28, white."""
    return ImageData.blank(28, 28)


async def read_item(raw: Mapping[str, Any], row: int, rules: RowRules) -> TrainingItem:
    """Check one input row and build its item; raises ``DataError(row=row)`` saying what is wrong."""
    try:
        return await _read(raw, rules, row)
    except _Bad as exc:
        raise DataError(str(exc), row=row) from None


def read_item_sync(raw: Mapping[str, Any], row: int, rules: RowRules) -> TrainingItem:
    """``read_item`` from synchronous code."""
    return asyncio.run(read_item(raw, row, rules))


class _Bad(Exception):
    """A reason a row is unusable (turned into a ``DataError`` with the row number)."""


# -- the stages ---------------------------------------------------------------------------------


async def _read(raw: Mapping[str, Any], rules: RowRules, row: int) -> TrainingItem:
    if not isinstance(raw, Mapping):
        raise _Bad(f"a row must be an object with a 'prompt', got {_kind(raw)}")
    layout = _present(raw.get("extra_info"))
    info = _mapping(raw["extra_info"], "extra_info") if layout else raw
    if not layout:
        unknown = sorted(set(raw) - _FLAT_KEYS)
        if unknown:
            raise _Bad(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                       f"a row has {', '.join(sorted(_FLAT_KEYS))} (or verl's layout with extra_info)")

    # 1. the conversation and its input images
    turns = _turns(raw.get("prompt"), raw.get("question"))
    images = await _images(raw.get("images"), rules.base_dir)
    turns = _placeholders(turns, len(images), given_as_chat=not isinstance(raw.get("prompt"), str))

    # 2. what the reward reads
    question = _text_field(info.get("question"), "question") or _question_of(turns)
    item = TrainingItem(
        prompt=turns, images=images, image_num=_image_num(info.get("image_num"), rules.image_num),
        tools=_tools(info.get("tools")), question=question, split=_split(info.get("split")), row=row,
        max_pixels=rules.max_pixels,
    )
    if _check_source(raw.get("data_source"), item, layout):
        item = replace(item, dummy_image=True)

    # 3. LLM-I's system prompt, and its dummy image for text rows
    if rules.system_prompt is not None:
        item = replace(item, prompt=_with_system(item.prompt, rules.system_prompt))
    if rules.dummy_image and not item.images:
        item = _with_dummy(item)
    return item


def _turns(prompt: Any, question: Any) -> tuple[Message, ...]:
    if not _present(prompt):
        if isinstance(question, str) and question.strip():
            return (Message("user", question.strip()),)
        raise _Bad("no prompt: give 'prompt' (text or chat turns) or 'question'")
    if isinstance(prompt, str):
        prompt = _maybe_json_turns(prompt)
    if isinstance(prompt, str):
        if not prompt.strip():
            raise _Bad("the prompt is empty")
        return (Message("user", prompt.strip()),)
    if not _is_list(prompt) or not len(prompt):
        raise _Bad(f"'prompt' must be text or a list of chat turns, got {_kind(prompt)}")
    turns = []
    for i, turn in enumerate(prompt):
        turn = _mapping(turn, f"prompt turn {i}")
        role, content = turn.get("role"), _content_text(turn.get("content"), i)
        if role not in _ROLES:
            raise _Bad(f"prompt turn {i} has role {role!r}; use one of {', '.join(_ROLES)}")
        turns.append(Message(role, content))
    if not any(t.role == "user" and t.content.replace(IMAGE_TOKEN, "").strip() for t in turns):
        raise _Bad("the prompt has no user turn with text")
    return tuple(turns)


def _maybe_json_turns(text: str) -> Any:
    """CSV cells hold chat turns as JSON text."""
    stripped = text.strip()
    if stripped.startswith("[") and '"role"' in stripped:
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise _Bad(f"'prompt' looks like JSON chat turns but does not parse: {exc.msg} at character {exc.pos}")
    return text


def _content_text(content: Any, i: int) -> str:
    """A turn's text; OpenAI-style content parts become text with ``<image>`` placeholders."""
    if isinstance(content, str):
        return content
    if _is_list(content):
        out = []
        for part in content:
            part = _mapping(part, f"a content part of prompt turn {i}")
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif kind in ("image", "image_url"):
                out.append(IMAGE_TOKEN)
            else:
                raise _Bad(f"prompt turn {i} has a content part of type {kind!r}; use 'text' or 'image'")
        return "".join(out)
    raise _Bad(f"prompt turn {i} has {_kind(content)} content; give text")


def _placeholders(turns: tuple[Message, ...], n_images: int, *, given_as_chat: bool) -> tuple[Message, ...]:
    """Each input image needs its ``<image>`` place; plain prompts get them in front of the text."""
    found = sum(t.content.count(IMAGE_TOKEN) for t in turns)
    if found == n_images:
        return turns
    if found == 0 and not given_as_chat:
        first = next(i for i, t in enumerate(turns) if t.role == "user")
        turn = turns[first]
        return (*turns[:first], Message("user", IMAGE_TOKEN * n_images + turn.content), *turns[first + 1:])
    raise _Bad(f"the prompt has {found} {IMAGE_TOKEN} placeholder{'s' if found != 1 else ''} "
               f"but the row has {n_images} image{'s' if n_images != 1 else ''}; they must match")


def _with_system(turns: tuple[Message, ...], system: str) -> tuple[Message, ...]:
    """LLM-I's replacement: none -> insert one, one leading -> replace it, else an error."""
    at = [i for i, t in enumerate(turns) if t.role == "system"]
    if not at:
        return (Message("system", system), *turns)
    if len(at) > 1:
        raise _Bad(f"the prompt has {len(at)} system turns; keep at most one, as the first turn")
    if at[0] != 0:
        raise _Bad("the system turn must be the first turn of the prompt")
    return (Message("system", system), *turns[1:])


def _with_dummy(item: TrainingItem) -> TrainingItem:
    last = max(i for i, t in enumerate(item.prompt) if t.role == "user")
    turn = item.prompt[last]
    turns = (*item.prompt[:last], Message("user", IMAGE_TOKEN + turn.content), *item.prompt[last + 1:])
    return replace(item, prompt=turns, images=(dummy_image(),), dummy_image=True)


def _question_of(turns: tuple[Message, ...]) -> str:
    users = [t.content.replace(IMAGE_TOKEN, "").strip() for t in turns if t.role == "user"]
    return users[-1] if users else ""


def _image_num(value: Any, default: int) -> int:
    if not _present(value):
        return default
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not _is_int(value):
        raise _Bad(f"image_num must be an integer: {_IMAGE_NUM_HELP}; got {value!r}")
    value = int(value)
    if value < -1:
        raise _Bad(f"image_num {value} is not allowed: {_IMAGE_NUM_HELP}")
    return value


def _tools(value: Any) -> tuple[str, ...]:
    if not _present(value):
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                raise _Bad(f"tools {value!r} is neither a JSON list nor comma-separated names") from None
        else:
            value = [v for v in re.split(r"[,\s]+", stripped) if v]
    if not _is_list(value):
        raise _Bad(f"tools must be a list of tool names, got {_kind(value)}")
    out: list[str] = []
    for tool in value:
        if not isinstance(tool, str) or tool.strip().lower() not in SOURCES:
            raise _Bad(f"unknown tool {tool!r} in tools; the tools are {', '.join(SOURCES)}")
        name = tool.strip().lower()
        if name not in out:
            out.append(name)
    return tuple(out)


def _split(value: Any) -> str | None:
    if not _present(value) or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or value.strip().lower() not in SPLITS:
        raise _Bad(f"split must be 'train' or 'test', got {value!r}")
    return value.strip().lower()


def _check_source(value: Any, item: TrainingItem, layout: bool) -> bool:
    """Check a given data_source against the row; True for a text row with LLM-I's dummy image."""
    if not _present(value):
        return False
    expected = ("interleaved", "interleaved_mm")
    if value not in expected:
        raise _Bad(f"data_source {value!r} is not one of {', '.join(expected)}")
    # A text row of a vision run carries LLM-I's dummy image and stays "interleaved".
    dummy = layout and value == "interleaved" and len(item.images) == 1 and _is_dummy(item.images[0])
    if not dummy and value != item.data_source:
        raise _Bad(f"data_source is {value!r} but the row has {len(item.images)} input image(s); "
                   f"expected {item.data_source!r}")
    return dummy


def _is_dummy(image: ImageData) -> bool:
    return (image.width, image.height) == (28, 28)


# -- images ------------------------------------------------------------------------------------


async def _images(value: Any, base_dir: Path | None) -> tuple[ImageData, ...]:
    if not _present(value):
        return ()
    if isinstance(value, str):
        value = _image_list_text(value)
    elif not _is_list(value):
        value = [value]
    return tuple([await _image(ref, i, base_dir) for i, ref in enumerate(value)])


def _image_list_text(text: str) -> list[Any]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return list(json.loads(stripped))
        except json.JSONDecodeError:
            raise _Bad("images looks like a JSON list but does not parse") from None
    return [p for p in (s.strip() for s in stripped.split(";")) if p]


async def _image(ref: Any, i: int, base_dir: Path | None) -> ImageData:
    from ..api import load_inputs

    what = f"image {i}"
    if isinstance(ref, Mapping):
        if ref.get("bytes") is not None:
            return _decode(_raw_bytes(ref["bytes"], what), what)
        if isinstance(ref.get("path"), str) and ref["path"]:
            ref = ref["path"]
        elif isinstance(ref.get("image"), str):
            ref = ref["image"]
        else:
            raise _Bad(f"{what} is a mapping without 'bytes' or 'path'")
    if isinstance(ref, (bytes, bytearray)):
        return _decode(bytes(ref), what)
    if hasattr(ref, "save") and hasattr(ref, "size"):  # a PIL image (Hugging Face datasets)
        return ImageData.from_pil(ref)
    if not isinstance(ref, (str, os.PathLike)):
        raise _Bad(f"{what} must be a path, URL, bytes or {{'bytes': ...}}, got {_kind(ref)}")
    text = os.fspath(ref)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if text.lower().startswith(("http://", "https://")):
        try:  # llmi's SafeFetcher: public addresses only, size and pixel caps
            return (await load_inputs([text]))[0]
        except (WriterError, FetchError) as exc:
            raise _Bad(f"{what} {text!r}: {exc}") from None
    if base_dir is None:
        raise _Bad(f"{what} {text!r} is a local path, which a dataset from the hub may not name; give bytes or URLs")
    path = (base_dir / text).expanduser()
    if not path.is_file():
        raise _Bad(f"{what} {text!r} does not exist (relative paths are read from {str(base_dir)!r})")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise _Bad(f"{what} {text!r} is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
    return _decode(path.read_bytes(), f"{what} {text!r}")


def _raw_bytes(value: Any, what: str) -> bytes:
    """Image bytes as parquet holds them, or as base64 text (JSON has no bytes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        import base64
        import binascii

        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _Bad(f"{what}: 'bytes' text is not base64") from None
    raise _Bad(f"{what}: 'bytes' must be bytes or base64 text, got {_kind(value)}")


def _decode(data: bytes, what: str) -> ImageData:
    import io

    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise _Bad(f"{what} is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
    unreadable = _Bad(f"{what} is not a readable image (PNG, JPEG, WebP, GIF...)")
    try:
        with Image.open(io.BytesIO(data)) as header:  # the size is known before any pixel is decoded
            width, height = header.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise unreadable from None
    if width * height > MAX_IMAGE_PIXELS:
        raise _Bad(f"{what} has {width} x {height} pixels, more than {MAX_IMAGE_PIXELS:,}")
    try:
        return ImageData.from_bytes(data)
    except ValueError:
        raise unreadable from None


# -- small readers -----------------------------------------------------------------------------


def _present(value: Any) -> bool:
    """Not missing: pandas and pyarrow spell "missing" as None or NaN."""
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return True


def _is_list(value: Any) -> bool:
    # parquet lists arrive as numpy arrays
    return isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) or type(value).__module__ == "numpy" and "int" in type(value).__name__


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Bad(f"{what} must be an object, got {_kind(value)}")
    return value


def _text_field(value: Any, name: str) -> str:
    if not _present(value):
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{name} must be text, got {_kind(value)}")
    return value.strip()


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"

