"""The two judges of LLM-I's reward, over any OpenAI-compatible endpoint.

* ``LLMJudge`` reads the question and the raw answer, tags included, and scores ``Text`` and
  ``Image`` (the tags as written), 1-5.
* ``MLLMJudge`` sees the answer with its pictures in place and scores ``Image Quality``,
  ``Task Relevance`` and ``Text-Image Relevance``, 1-5.

Their rubrics are llmi's words for LLM-I's criteria (``llmi.prompts.judge_prompt``). How they
ask and how they read the reply is a ``JudgeStyle``:

``llmi-compat`` (LLM-I's): plain ``Label: N`` replies read with LLM-I's patterns (a missing
value is 1, nothing clamped); the LLM judge at temperature 0.5 with a fresh random seed and
``enable_thinking: false`` in the body; the MLLM judge with the server's sampling, the answer's
pictures as JPEG data URLs carrying a ``max_pixels`` hint of 784,000; input images never shown.

``llmi``: replies constrained to a JSON schema (or a grammar) where the server can, values
clamped to 1-5 and a missing one an error, a fixed seed, thinking switched off through
``chat_template_kwargs`` (Qwen3's chat template), pictures resized to the pixel budget before
they are sent, and the question's input images shown to the MLLM judge.

>>> JudgeStyle.preset("llmi", "mllm").show_inputs
True
>>> MLLM_REPLY.parse("Image Quality: 4\\nTask Relevance: 5\\nText-Image Relevance: 3", compat=True).values
{'quality': 4, 'task': 5, 'text_image': 3}
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from ..errors import ConfigError, JudgeError
from .breakdown import JudgeVerdict
from .judge_client import JudgeClient, JudgeReply, JudgeSampling
from .replies import ReplyFormat, ScoreField, expected_scores
from ..profiles import remove_thinking
from .view import IMAGE_TOKEN, RewardView

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageData

__all__ = ["JudgeStyle", "LLMJudge", "MLLMJudge", "LLM_REPLY", "MLLM_REPLY", "judges_from_env", "PROFILES"]

LLM_REPLY = ReplyFormat("llm_judge", (ScoreField("text", "Text", 1, 5), ScoreField("image", "Image", 1, 5)))
MLLM_REPLY = ReplyFormat(
    "mllm_judge",
    (ScoreField("quality", "Image Quality", 1, 5), ScoreField("task", "Task Relevance", 1, 5),
     ScoreField("text_image", "Text-Image Relevance", 1, 5)),
)
PROFILES = ("llmi-compat", "llmi")
_TOP_LOGPROBS = 20  # alternatives per token: enough for every digit of a 1-5 score
_NO_THINKING = {"top-level": {"enable_thinking": False}, "template": {"chat_template_kwargs": {"enable_thinking": False}},
                "none": {}}


@dataclass(frozen=True)
class JudgeStyle:
    """How a judge is asked and how its reply is read (see the module docs for the presets).

    ``seed``: an int, ``"random"`` (a new one per call, as LLM-I does) or ``None`` (not sent).
    ``thinking``: how "do not think" is said: ``top-level`` (``enable_thinking: false``, as
    LLM-I sends it), ``template`` (``chat_template_kwargs``, what vLLM and SGLang honour) or
    ``none``. ``resize``: shrink pictures to ``max_pixels`` before sending (otherwise only the
    hint is sent, as LLM-I does). ``expected``: ask for the reply's token probabilities and
    score each field by its expected value under them (``replies.expected_scores``) where the
    server gives them, not by the one value written: for choosing among candidates, never in
    LLM-I's reward.
    """

    compat: bool = True
    structured: bool = False
    temperature: float | None = 0.5
    seed: int | Literal["random"] | None = "random"
    thinking: Literal["top-level", "template", "none"] = "top-level"
    max_tokens: int | None = None
    max_pixels: int = 784_000
    resize: bool = False
    show_inputs: bool = False
    expected: bool = False

    def __post_init__(self) -> None:
        if self.thinking not in _NO_THINKING:
            raise ConfigError(f"thinking must be one of {', '.join(_NO_THINKING)}, not {self.thinking!r}")
        if not (self.seed is None or self.seed == "random" or (isinstance(self.seed, int) and not isinstance(self.seed, bool))):
            raise ConfigError(f"seed must be an integer, 'random' or None, not {self.seed!r}")
        if self.max_pixels < 28 * 28:
            raise ConfigError(f"max_pixels must be at least 784, not {self.max_pixels}")

    @classmethod
    def preset(cls, profile: str, judge: Literal["llm", "mllm"]) -> "JudgeStyle":
        if profile == "llmi-compat":
            return cls() if judge == "llm" else cls(temperature=None, seed=None, thinking="none")
        if profile == "llmi":
            return cls(compat=False, structured=True, temperature=0.5, seed=0, thinking="template", max_tokens=512,
                       resize=True, show_inputs=judge == "mllm")
        raise ConfigError(f"unknown judge profile {profile!r}; choose {', '.join(PROFILES)}")

    def sampling(self) -> JudgeSampling:
        seed = random.randint(0, 1_000_000) if self.seed == "random" else self.seed
        return JudgeSampling(temperature=self.temperature, max_tokens=self.max_tokens, seed=seed,  # type: ignore[arg-type]
                             extra_body=_NO_THINKING[self.thinking], top_logprobs=_TOP_LOGPROBS if self.expected else None)


class _Judge:
    """What both judges share: a client, a style, a rubric, a reply format."""

    kind: Literal["llm", "mllm"]
    reply_format: ReplyFormat

    def __init__(self, client: JudgeClient, *, style: JudgeStyle | None = None, profile: str = "llmi-compat",
                 rubric: str | None = None) -> None:
        from ..prompts import judge_prompt

        self.client = client
        self.style = style or JudgeStyle.preset(profile, self.kind)
        self.rubric = rubric if rubric is not None else judge_prompt(self.kind)

    @property
    def system_prompt(self) -> str:
        return f"{self.rubric.rstrip()}\n\n{self.reply_format.instructions(json_reply=self.style.structured)}"

    async def _ask(self, content: str | list[dict[str, Any]]) -> JudgeVerdict:
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": content}]
        try:
            reply = await self.client.complete(
                messages, reply=self.reply_format if self.style.structured else None, sampling=self.style.sampling()
            )
        except JudgeError as exc:
            return JudgeVerdict(self.kind, "failed", error=str(exc), error_type=type(exc).__name__,
                                model=self.client.model)
        return self._read(reply)

    def _read(self, reply: JudgeReply) -> JudgeVerdict:
        text = reply.text.strip()
        if self.style.compat and self.kind == "llm":  # LLM-I drops think blocks from the LLM judge's reply only
            text = remove_thinking(text, "blocks")[0]
        parsed = self.reply_format.parse(text, compat=self.style.compat)
        common = dict(reply=reply.text, parsed=dict(parsed.values), clamped=parsed.clamped, model=reply.model,
                      structured=reply.structured, latency=reply.latency, attempts=reply.attempts)
        if parsed.missing and not self.style.compat:
            labels = ", ".join(f.label for f in self.reply_format.scores if f.key in parsed.missing)
            return JudgeVerdict(self.kind, "failed", error=f"the reply gives no {labels}: {reply.text[:200]!r}",
                                error_type="JudgeError", **common)
        # LLM-I's rule: a value the reply does not give counts as 1
        scores = {k: (1 if v is None else v) for k, v in parsed.values.items()}
        expected: dict[str, float] = {}
        if self.style.expected and reply.logprobs:
            found = expected_scores(self.reply_format, reply.logprobs, compat=self.style.compat)
            expected = {k: v for k, v in found.items() if parsed.values.get(k) is not None}
            scores.update(expected)
        return JudgeVerdict(self.kind, "ok", scores=scores, expected=tuple(expected), **common)


class LLMJudge(_Judge):
    """Scores the prose and the tags of an answer (text only).

    ``await judge.judge(question, view)`` returns a ``JudgeVerdict`` with ``text`` and
    ``image`` scores, or ``status="failed"`` with the error (the scorer applies the policy).
    """

    kind = "llm"
    reply_format = LLM_REPLY

    def messages_for(self, question: str, view: RewardView) -> str:
        return f"Question: {question}\nAnswer: {view.answer}"

    async def judge(self, question: str, view: RewardView, inputs: "Sequence[ImageData]" = ()) -> JudgeVerdict:
        return await self._ask(self.messages_for(question, view))


class MLLMJudge(_Judge):
    """Scores the pictures of an answer in context (a vision-language model).

    The user turn is ``Question: ...\\nAnswer: ...`` cut at each ``<image>``, the i-th picture
    placed at the i-th cut, as LLM-I builds it.
    """

    kind = "mllm"
    reply_format = MLLM_REPLY

    def __init__(self, client: JudgeClient, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._encoded: OrderedDict[tuple[str, int, bool], str] = OrderedDict()
        self._encoded_lock = threading.Lock()

    async def content_for(
        self, question: str, view: RewardView, inputs: "Sequence[ImageData]" = ()
    ) -> list[dict[str, Any]]:
        """The user turn's parts (text and ``image_url``), pictures encoded off the event loop."""
        shown = list(inputs) if self.style.show_inputs else []
        urls = await asyncio.to_thread(lambda: [self._data_url(img) for img in (*shown, *view.images)])
        given, made = urls[: len(shown)], urls[len(shown):]
        parts: list[dict[str, Any]] = []
        if given:
            parts.append({"type": "text", "text": f"Question: {question}\nImages given with the question:"})
            parts += [self._image_part(u) for u in given]
            pieces = f"\nAnswer: {view.text}".split(IMAGE_TOKEN)
        else:
            pieces = f"Question: {question}\nAnswer: {view.text}".split(IMAGE_TOKEN)
        for i, piece in enumerate(pieces):
            if piece:
                parts.append({"type": "text", "text": piece})
            if i < len(made):
                parts.append(self._image_part(made[i]))
        return parts

    async def judge(self, question: str, view: RewardView, inputs: "Sequence[ImageData]" = ()) -> JudgeVerdict:
        return await self._ask(await self.content_for(question, view, inputs))

    def _image_part(self, url: str) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": url, "max_pixels": self.style.max_pixels}}

    def _data_url(self, image: "ImageData") -> str:
        key = (image.sha256, self.style.max_pixels, self.style.resize)
        with self._encoded_lock:
            url = self._encoded.get(key)
        if url is None:
            url = image.to_jpeg(max_pixels=self.style.max_pixels if self.style.resize else None).data_url
            with self._encoded_lock:
                self._encoded[key] = url
                while len(self._encoded) > 256:  # a GRPO group's images, several times over
                    self._encoded.popitem(last=False)
        return url


def judges_from_env(
    env: Mapping[str, str] | None = None, *, profile: str = "llmi-compat", **client_kwargs: Any
) -> tuple[LLMJudge | None, MLLMJudge | None]:
    """The judges the environment configures (``LLM_JUDGE_BASE_URL``, ``MLLM_JUDGE_BASE_URL``,
    with optional ``*_MODEL_NAME`` and ``*_API_KEY``); ``None`` for one that is not set.

    >>> judges_from_env({})
    (None, None)
    """
    llm = JudgeClient.from_env("LLM_JUDGE", env, label="LLM judge", **client_kwargs)
    mllm = JudgeClient.from_env("MLLM_JUDGE", env, label="MLLM judge", **client_kwargs)
    return (LLMJudge(llm, profile=profile) if llm else None, MLLMJudge(mllm, profile=profile) if mllm else None)

