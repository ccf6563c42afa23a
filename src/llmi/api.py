"""The Python API: ``generate`` a document from a prompt, or ``render`` a model's answer.

>>> doc = render("Plain prose, no pictures.")
>>> doc.text
'Plain prose, no pictures.'
>>> render("<think>plan</think>No pictures.", profile="llmi-compat").judge_view()
'No pictures.'

``generate`` asks a writer model for an answer with ``<imgen>`` tags and runs the tools, each
tag as soon as the writer has written it::

    doc = llmi.generate("Explain the water cycle")          # offline: SmolLM2 + local tools
    doc.save("out/water")                                   # index.html, document.md, document.json

Each has an async twin (``agenerate``, ``arender``) for use inside an event loop; the sync
functions work from plain scripts and from notebooks with a running loop alike.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence, TypeVar

from .errors import WriterError
from .image import ImageData
from .llm.base import ImageInput, Sampling, Writer, build_messages, is_url, load_image, trim_unfinished

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document
    from .engine import Engine
    from .fetch import SafeFetcher
    from .profiles import ProfileLike
    from .scaling import ScaleConfig
    from .scaling.judges import Judges

__all__ = ["generate", "agenerate", "render", "arender", "load_inputs"]

T = TypeVar("T")

async def agenerate(
    prompt: str,
    *,
    images: Sequence[ImageInput] = (),
    writer: Writer | None = None,
    engine: "Engine | None" = None,
    system_prompt: str | None = None,
    sampling: Sampling | None = None,
    on_text: Callable[[str], None] | None = None,
    meta: Mapping[str, Any] | None = None,
    profile: "ProfileLike" = None,
    scale: "int | ScaleConfig | None" = None,
    judges: "Judges | None" = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> "Document":
    """Write an answer for ``prompt`` and run its tags; returns the ``Document``.

    ``images`` (paths, URLs or ``ImageData``) are shown to the writer and are the document's
    input images, which ``edit`` tags address as ``img_index`` 0..M-1. ``writer`` defaults to
    ``llmi.llm.writer_from_env()`` (the embedded model unless ``LLMI_BASE_URL`` is set),
    ``engine`` to ``Engine.from_env()``, ``system_prompt`` to the shipped prompt that suits the
    writer (``llmi.prompts.system_prompt(variant=writer.prompt_variant)``; "full" by default).
    ``on_text`` receives each piece of text as the writer streams it. Tags start running as
    soon as the writer has finished them, so the tools work while it writes the rest.
    ``profile`` says how the answer is read (the engine's by default; see ``arender``).

    ``scale=N`` (N > 1, or a ``llmi.scaling.ScaleConfig``) runs test-time scaling instead: N
    candidates, validated, one chosen by ``judges`` (``llmi.scaling.judges.Judges``; default:
    LLM-I's judge variables), its tool calls improved and its prose polished; ``on_stage``
    hears each stage's progress and ``doc.meta["scaling"]`` records it all (docs/scaling.md).
    """
    if scale is not None and scale != 1:
        from .scaling import ScaleConfig, ascale

        config = scale if isinstance(scale, ScaleConfig) else ScaleConfig(n=scale)
        return await ascale(prompt, images=images, writer=writer, engine=engine, judges=judges, sampling=sampling,
                            config=config, system_prompt=system_prompt, meta=meta, on_stage=on_stage)
    from .engine import Engine
    from .llm import writer_from_env
    from .prompts import system_prompt as default_system_prompt

    # 1. the conversation (cheap checks first: an empty prompt fails before any model loads)
    inputs = await load_inputs(images)
    writer = writer or writer_from_env()
    if system_prompt is None:
        system_prompt = default_system_prompt(variant=getattr(writer, "prompt_variant", "full"))
    messages = build_messages(prompt, system=system_prompt, images=inputs)

    # 2. the writer's answer, streamed into the engine: each tag starts as soon as it is written
    own = engine is None
    eng = Engine.from_env() if engine is None else engine
    run = eng.stream(inputs, profile=profile)
    try:
        started = time.monotonic()
        pieces: list[str] = []
        async for piece in writer.stream(messages, sampling):
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
            run.feed(piece)
        text = trim_unfinished("".join(pieces))  # no half tag, no half sentence at the end
        if not text.strip():
            raise WriterError(f"the writer {writer.name} returned no text; try another seed or prompt")
        writing = time.monotonic() - started

        # 3. the tools still running, and the document
        info = {"prompt": prompt, "writer": writer.name, "writer_seconds": round(writing, 3), **(meta or {})}
        return await run.finish(text, meta=info)
    finally:
        await run.cancel()  # nothing left to stop once finished; the writer's error otherwise
        if own:
            await eng.aclose()


async def arender(
    text: str,
    *,
    inputs: Sequence[ImageInput] = (),
    engine: "Engine | None" = None,
    meta: Mapping[str, Any] | None = None,
    profile: "ProfileLike" = None,
) -> "Document":
    """Run the tools behind the tags in ``text`` and return the ``Document``.

    Without ``engine``, one is made with ``Engine.from_env()`` and closed afterwards.
    ``profile`` says how the answer is read: ``"llmi"`` (the engine's default), or
    ``"llmi-compat"`` for LLM-I's exact reading, processed text and statistics
    (``llmi.profiles``).
    """
    from .engine import Engine

    images = await load_inputs(inputs)
    own = engine is None
    eng = Engine.from_env() if engine is None else engine
    try:
        return await eng.arun(text, images, meta=meta, profile=profile)
    finally:
        if own:
            await eng.aclose()


def generate(prompt: str, **kwargs: Any) -> "Document":
    """Synchronous ``agenerate`` (same arguments)."""
    return _run_sync(lambda: agenerate(prompt, **kwargs))


def render(text: str, **kwargs: Any) -> "Document":
    """Synchronous ``arender`` (same arguments)."""
    return _run_sync(lambda: arender(text, **kwargs))


async def load_inputs(images: Sequence[ImageInput], *, fetcher: "SafeFetcher | None" = None) -> tuple[ImageData, ...]:
    """Decode input images: files, http(s) URLs or ``ImageData`` as they are.

    URLs are downloaded with llmi's ``SafeFetcher`` (public addresses only, size and pixel
    caps, the bytes must be an image); pass ``fetcher`` to change its policy.
    """
    if isinstance(images, (str, bytes, os.PathLike, ImageData)):
        images = [images]  # type: ignore[list-item]
    out: list[ImageData] = []
    for img in images:
        if isinstance(img, ImageData):
            out.append(img)
        elif is_url(img):
            out.append(await _download(str(img), fetcher))
        else:
            out.append(load_image(img))
    return tuple(out)


async def _download(url: str, fetcher: "SafeFetcher | None") -> ImageData:
    from .errors import FetchError
    from .fetch import SafeFetcher
    from .profiles import ProfileLike

    try:
        return await (fetcher or SafeFetcher()).fetch(url)
    except FetchError as exc:
        raise WriterError(f"cannot use the input image {exc}; download it and pass the file instead") from None


def _run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion, also from inside a running loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())  # type: ignore[arg-type]
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make()))  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="llmi-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
