"""What a judge's reply must hold, and how it is read.

A ``ReplyFormat`` names integer score fields (each with a JSON key, the label a plain-text
reply uses, and a range) and free-text fields. From it come a JSON schema (for servers that
constrain output with one), a GBNF grammar (for llama.cpp servers) and the parser.

Two ways of reading a reply:

* ``compat=True`` is LLM-I's: ``Label: <int>`` found anywhere (first match), negative and
  out-of-range values kept as they are, no JSON;
* otherwise JSON first (a bare object, or one in a code fence), then ``Label: N`` lines
  (optionally in bold); values outside the range are clamped and reported.

>>> fmt = ReplyFormat("llm_judge", (ScoreField("text", "Text", 1, 5), ScoreField("image", "Image", 1, 5)))
>>> fmt.parse('{"text": 7, "image": 4}').values
{'text': 5, 'image': 4}
>>> fmt.parse("Text: 7\\nImage: 4", compat=True).values
{'text': 7, 'image': 4}
>>> fmt.parse("Text: 3", compat=True).missing
('image',)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["ScoreField", "ReplyFormat", "ParsedReply", "expected_scores", "strip_reasoning"]

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class ScoreField:
    """One integer score: its JSON ``key``, its plain-text ``label``, and its range."""

    key: str
    label: str
    low: int
    high: int


@dataclass(frozen=True)
class ParsedReply:
    """The values read from a reply (``None`` for one it did not give)."""

    values: Mapping[str, float | None]
    notes: Mapping[str, str] = field(default_factory=dict)
    clamped: tuple[str, ...] = ()
    form: str = "lines"  # "json" or "lines"

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.values.items() if v is None)


def strip_reasoning(text: str) -> str:
    """A reply without its ``<think>`` blocks (an unclosed one runs to the end)."""
    text = _THINK.sub("", text)
    start = text.find("<think>")
    return text[:start] if start >= 0 else text


@dataclass(frozen=True)
class ReplyFormat:
    """The shape of a judge's reply: score fields, then free-text ``notes`` fields."""

    name: str
    scores: tuple[ScoreField, ...]
    notes: tuple[str, ...] = ()

    # -- constraining the reply ----------------------------------------------------------------
    def instructions(self, *, json_reply: bool = False) -> str:
        """The sentence that tells a judge how to reply (appended to its rubric).

        >>> print(ReplyFormat("j", (ScoreField("text", "Text", 1, 5),)).instructions())
        Reply with exactly these lines and nothing else:
        Text: <1-5>
        """
        if json_reply:
            fields = [f'"{n}": "<{n}>"' for n in self.notes]
            fields += [f'"{f.key}": <{f.low}-{f.high}>' for f in self.scores]
            return "Reply with one JSON object and nothing else:\n{" + ", ".join(fields) + "}"
        lines = [f"{f.label}: <{f.low}-{f.high}>" for f in self.scores] + [f"{n}: <{n}>" for n in self.notes]
        return "Reply with exactly these lines and nothing else:\n" + "\n".join(lines)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the reply object (every field required, nothing else allowed)."""
        props: dict[str, Any] = {note: {"type": "string"} for note in self.notes}
        for f in self.scores:
            props[f.key] = {"type": "integer", "enum": list(range(f.low, f.high + 1))}
        order = [*self.notes, *(f.key for f in self.scores)]
        return {"type": "object", "properties": {k: props[k] for k in order}, "required": order,
                "additionalProperties": False}

    def grammar(self, *, lines: bool = False) -> str:
        """A GBNF grammar for the reply: the JSON object, or (``lines=True``) LLM-I's
        ``Label: N`` lines, so a llama.cpp server answers in exactly that shape.

        >>> print(ReplyFormat("j", (ScoreField("text", "Text", 1, 5),)).grammar(lines=True))
        root ::= "Text: " v0
        v0 ::= ("1" | "2" | "3" | "4" | "5")
        """
        values = [f'v{i} ::= ({" | ".join(_gbnf_str(str(n)) for n in range(f.low, f.high + 1))})'
                  for i, f in enumerate(self.scores)]
        if lines:
            body = ' "\\n" '.join(f'{_gbnf_str(f.label + ": ")} v{i}' for i, f in enumerate(self.scores))
            return "\n".join([f"root ::= {body}", *values])
        members = [f'{_gbnf_str(json.dumps(note) + ": ")} note' for note in self.notes]
        members += [f'{_gbnf_str(json.dumps(f.key) + ": ")} v{i}' for i, f in enumerate(self.scores)]
        body = ' ", " '.join(members)
        rules = [f'root ::= "{{" {body} "}}"', *values]
        if self.notes:
            rules.append(r'note ::= "\"" ([^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt])* "\""')
        return "\n".join(rules)

    # -- reading the reply ------------------------------------------------------------------------
    def parse(self, text: str, *, compat: bool = False) -> ParsedReply:
        """The scores in ``text`` (see the module docs for the two ways of reading)."""
        if compat:
            values = {}
            for f in self.scores:
                m = re.search(re.escape(f.label) + r":\s*(-?\d+)", text)
                values[f.key] = int(m.group(1)) if m else None
            return ParsedReply(values)
        text = strip_reasoning(text)
        data = _json_object(text)
        if data is not None:
            parsed = self._from_json(data)
            if not parsed.missing:
                return parsed
            lines = self._from_lines(text)
            return parsed if len(lines.missing) >= len(parsed.missing) else lines
        return self._from_lines(text)

    def _from_json(self, data: Mapping[str, Any]) -> ParsedReply:
        folded = {str(k).strip().lower(): v for k, v in data.items()}
        raw = {}
        for f in self.scores:
            value = data.get(f.key, folded.get(f.key.lower(), folded.get(f.label.lower())))
            raw[f.key] = _number(value)
        notes = {n: str(data[n]) for n in self.notes if isinstance(data.get(n), (str, int, float))}
        return self._clamped(raw, notes, "json")

    def _from_lines(self, text: str) -> ParsedReply:
        raw = {}
        for f in self.scores:
            pattern = r"(?<![\w-])\**" + re.escape(f.label) + r"\**\s*:\s*\**\s*(-?\d+(?:\.\d+)?)"
            m = re.search(pattern, text, re.IGNORECASE)
            raw[f.key] = float(m.group(1)) if m else None
        notes = {}
        for n in self.notes:
            m = re.search(r"(?<![\w-])" + re.escape(n) + r"\s*:\s*(.+)", text, re.IGNORECASE)
            if m:
                notes[n] = m.group(1).strip()
        return self._clamped(raw, notes, "lines")

    def _clamped(self, raw: Mapping[str, float | None], notes: Mapping[str, str], form: str) -> ParsedReply:
        values: dict[str, float | None] = {}
        clamped = []
        for f in self.scores:
            v = raw[f.key]
            if v is not None and not f.low <= v <= f.high:
                clamped.append(f.key)
                v = min(max(v, f.low), f.high)
            values[f.key] = int(v) if v is not None and float(v).is_integer() else v
        return ParsedReply(values, notes, tuple(clamped), form)


def expected_scores(
    fmt: ReplyFormat, tokens: "tuple[tuple[str, Mapping[str, float]], ...] | list", *, compat: bool = False
) -> dict[str, float]:
    """Each score's expected value under the judge's own token probabilities.

    ``tokens`` are the reply's tokens, each with its alternatives' log-probabilities (what an
    OpenAI-compatible server returns with ``logprobs`` and ``top_logprobs``). For each score
    field the token that wrote its value is found (``"key": N`` in a JSON reply, ``Label: N`` in
    lines); its in-range digit alternatives, renormalised, give the expectation. A field whose
    value is not one token of its own (or has no in-range alternative) is left out, so the
    caller keeps the value as written. One reply thereby says what many samples would average
    to, the way G-Eval reads a judge.

    >>> fmt = ReplyFormat("j", (ScoreField("text", "Text", 1, 5),))
    >>> toks = [('{"text": ', {'{"text": ': 0.0}), ("4", {"4": math.log(0.6), "2": math.log(0.2), "x": -1.0}),
    ...         ("}", {"}": 0.0})]
    >>> round(expected_scores(fmt, toks)["text"], 3)
    3.5
    """
    text = "".join(tok for tok, _ in tokens)
    starts, at = [], 0
    for tok, _ in tokens:
        starts.append(at)
        at += len(tok)
    out: dict[str, float] = {}
    for f in fmt.scores:
        if compat:
            pattern = re.escape(f.label) + r":\s*(-?\d+)"
        else:
            pattern = r'(?:"' + re.escape(f.key) + r'"|(?<![\w-])\**' + re.escape(f.label) + r'\**)\s*:\s*\**\s*(\d+)'
        m = re.search(pattern, text, 0 if compat else re.IGNORECASE)
        if m is None:
            continue
        i = max(k for k, start in enumerate(starts) if start <= m.start(1))
        token, alternatives = tokens[i]
        if starts[i] + len(token) < m.end(1) or token.strip() != m.group(1):
            continue  # the value shares its token with other text, or spans several tokens
        weights: dict[int, float] = {}
        for alt, logprob in alternatives.items():
            digits = alt.strip()
            if digits.isdigit() and f.low <= int(digits) <= f.high and math.isfinite(logprob):
                weights[int(digits)] = weights.get(int(digits), 0.0) + math.exp(logprob)
        total = sum(weights.values())
        if total > 0:
            out[f.key] = sum(value * w for value, w in weights.items()) / total
    return out


def _json_object(text: str) -> Mapping[str, Any] | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(data, dict):
            return data
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value and abs(value) != float("inf") else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    return None


def _gbnf_str(text: str) -> str:
    return json.dumps(text)
