"""Reading profiles: how a model's answer is read, counted and shown to judges.

A ``Profile`` is a frozen set of named options. Two are built in:

- ``llmi`` (``LLMI``), the default for rendering: tags are found tolerantly (whitespace and
  code fences around them, a ``</imgen>`` inside a string), bodies are read by llmi's four
  readers, chart code is never garbled, and every tag counts in the statistics;
- ``llmi-compat`` (``LLMI_COMPAT``), the default for rewards and training: LLM-I's tag regex,
  body reading, validity rules, index numbering, processed text, ``<think>`` removal and
  statistics, exactly, so rewards equal LLM-I's on the same tool outcomes.

Derive your own with ``dataclasses.replace``; a derived profile gets a new ``name`` so that
documents say honestly how they were read:

>>> import dataclasses
>>> strict = dataclasses.replace(LLMI_COMPAT, name="compat-clean-code", code_cleaning="exact")
>>> strict.tag_finding, strict.code_cleaning
('llmi', 'exact')
>>> get_profile("llmi-compat") is LLMI_COMPAT
True

Every option and every difference from LLM-I is listed in ``docs/compat.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Union

from .errors import ConfigError

__all__ = ["LLMI", "LLMI_COMPAT", "PROFILES", "Profile", "ProfileLike", "get_profile", "remove_thinking"]


@dataclass(frozen=True)
class Profile:
    """How an answer is read. Each option names one behaviour; the values are documented here
    and, side by side with LLM-I's, in ``docs/compat.md``.

    - ``tag_finding``: ``"tolerant"`` pairs each ``</imgen>`` with the nearest open ``<imgen>``,
      allows whitespace and a code fence inside the tag, folds a fence wrapped around it into
      the tag's slot, and lets a ``</imgen>`` or ``<imgen>`` sit inside a string;
      ``"llmi"`` is LLM-I's non-greedy ``<imgen>{...}</imgen>`` search: ``{`` right after
      ``<imgen>`` and ``}`` right before ``</imgen>``, anything else stays text.
    - ``body_reading``: ``"tolerant"`` reads Python literals, JSON and broken literals (llmi's
      four readers); ``"llmi"`` is LLM-I's: the raw-code pattern, then ``ast.literal_eval``.
    - ``code_cleaning``: ``"exact"`` drops fence lines, removes leading indentation and
      decodes escapes exactly once, keeping non-ASCII text; ``"llmi"`` is LLM-I's
      ``sanitize_code`` (fence, strip, then ``unicode_escape``, which garbles non-ASCII text
      and unescapes literal-evaluated code a second time).
    - ``bool_index``: read ``img_index`` ``True``/``False`` as 1/0 (LLM-I) instead of rejecting.
    - ``blank_params``: accept an empty or blank ``query``/``prompt``/``code`` (LLM-I) instead of
      rejecting it with a reason.
    - ``thinking``: ``"keep"`` leaves ``<think>`` blocks in; ``"blocks"`` removes complete
      ``<think>...</think>`` blocks before anything runs (LLM-I's reward manager); ``"all"``
      also removes an answer's opening text up to a ``</think>`` that has no ``<think>``
      (chat templates that start the reply inside the thinking).
    - ``counting``: which tags the statistics count. ``"all"``: every slot, under the source it
      names (unreadable ones under ``invalid``); ``"llmi"``: LLM-I's rule (a tag that fails the
      validity rules is not counted, except an edit whose image index cannot be used).
    - ``typed_markers``: an ``<image>`` or ``<fail_to_generate_image>`` the model typed itself
      is ``"kept"`` in the judge view (LLM-I: a typed ``<image>`` counts as an image) or
      ``"defused"`` to ``[image]`` so that ``<image>`` counts only made images.
    - ``blank_figure``: chart code that draws nothing ``"fails"`` (llmi) or yields its blank
      figure as an ``"image"`` (LLM-I counts it a success).
    """

    name: str
    tag_finding: Literal["tolerant", "llmi"] = "tolerant"
    body_reading: Literal["tolerant", "llmi"] = "tolerant"
    code_cleaning: Literal["exact", "llmi"] = "exact"
    bool_index: bool = False
    blank_params: bool = False
    thinking: Literal["keep", "blocks", "all"] = "all"
    counting: Literal["all", "llmi"] = "all"
    typed_markers: Literal["defused", "kept"] = "defused"
    blank_figure: Literal["fails", "image"] = "fails"

    def __post_init__(self) -> None:
        for f in fields(self):
            allowed = _CHOICES.get(f.name)
            value = getattr(self, f.name)
            if allowed is not None and (value not in allowed or type(value) is not type(allowed[0])):
                raise ConfigError(
                    f"profile option {f.name}={value!r} is not one of {', '.join(map(repr, allowed))}"
                )
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("a profile needs a name")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (``document.json`` records them)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """The profile ``to_dict`` wrote; a built-in name with unchanged options gives the
        built-in profile itself. Unknown keys are ignored (a newer llmi may add options)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a profile is a mapping of option names to values, not {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        if "name" not in data:
            raise ConfigError("a profile needs a name")
        profile = cls(**{k: v for k, v in data.items() if k in names})
        builtin = PROFILES.get(profile.name)
        return builtin if builtin == profile else profile


_CHOICES: dict[str, tuple[Any, ...]] = {
    "tag_finding": ("tolerant", "llmi"),
    "body_reading": ("tolerant", "llmi"),
    "code_cleaning": ("exact", "llmi"),
    "bool_index": (False, True),
    "blank_params": (False, True),
    "thinking": ("keep", "blocks", "all"),
    "counting": ("all", "llmi"),
    "typed_markers": ("defused", "kept"),
    "blank_figure": ("fails", "image"),
}

LLMI = Profile("llmi")

LLMI_COMPAT = Profile(
    "llmi-compat",
    tag_finding="llmi",
    body_reading="llmi",
    code_cleaning="llmi",
    bool_index=True,
    blank_params=True,
    thinking="blocks",
    counting="llmi",
    typed_markers="kept",
    blank_figure="image",
)

PROFILES: Mapping[str, Profile] = {p.name: p for p in (LLMI, LLMI_COMPAT)}

ProfileLike = Union[str, Profile, None]


def get_profile(profile: ProfileLike, default: Profile = LLMI) -> Profile:
    """A ``Profile`` from a name, a profile, or ``None`` (``default``).

    >>> get_profile(None).name, get_profile("llmi").name
    ('llmi', 'llmi')
    >>> get_profile("compat")
    Traceback (most recent call last):
    ...
    llmi.errors.ConfigError: unknown profile 'compat'; choose 'llmi' or 'llmi-compat', or pass a Profile
    """
    if profile is None:
        return default
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]
    raise ConfigError(
        f"unknown profile {profile!r}; choose {' or '.join(map(repr, PROFILES))}, or pass a Profile"
    )


# LLM-I's reward manager: non-greedy, across lines.
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_THINK_CLOSE = "</think>"


def remove_thinking(text: str, mode: str) -> tuple[str, tuple[str, ...]]:
    """``text`` without its thinking, and the removed pieces (in order).

    >>> remove_thinking("<think>plan</think>Answer", "blocks")
    ('Answer', ('<think>plan</think>',))
    >>> remove_thinking("plan</think>Answer", "all")
    ('Answer', ('plan</think>',))
    >>> remove_thinking("plan</think>Answer", "blocks")[0]
    'plan</think>Answer'
    """
    if mode == "keep" or "think>" not in text:
        return text, ()
    removed: list[str] = []
    if mode == "all":
        close = text.find(_THINK_CLOSE)
        if close >= 0 and "<think>" not in text[:close]:
            end = close + len(_THINK_CLOSE)
            removed.append(text[:end])
            text = text[end:]
    if "<think>" in text:
        removed += _THINK_BLOCK.findall(text)
        text = _THINK_BLOCK.sub("", text)
    return text, tuple(removed)
