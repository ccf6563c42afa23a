"""LLM-I's own rules for finding, reading and numbering tags (the ``llmi-compat`` profile).

Written from the rules in LLM-I's released code (``docs/compat.md`` lists them beside llmi's):

- a tag is the shortest ``<imgen>{...}</imgen>`` with ``{`` right after ``<imgen>`` and ``}``
  right before ``</imgen>`` (``SLOT``, found in linear time by ``find_slots``);
- a body holding ``'source': 'code'`` is first matched against one fixed layout whose code
  string is taken as written (``RAW_CODE``); otherwise it is ``ast.literal_eval``-ed, and
  anything but a dict is unreadable (``read_body``);
- chart code is cleaned by ``sanitize_code`` before it runs;
- an edit's ``img_index`` is checked by the scheduler before validity: an edit it never runs
  counts as a failed edit, valid or not, while other invalid tags are not counted
  (``index_rule``).

``llmi.tags.parse`` uses these when a profile asks for them.
"""

from __future__ import annotations

import ast
import codecs
import re
import warnings
from collections.abc import Sequence
from typing import Any

from ._tag_recovery import decode_code, quiet_escape_warnings
from .errors import TagSyntaxError

__all__ = ["SLOT", "find_slots", "index_problem", "index_rule", "range_problem", "read_body", "sanitize_code"]

#: LLM-I's tag pattern (non-greedy, dot matches newlines)
SLOT = re.compile(r"<imgen>(\{.*?\})</imgen>", re.DOTALL)
_OPEN, _CLOSE = "<imgen>{", "}</imgen>"


def find_slots(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each match of ``SLOT``, in order, in linear time.

    A match starting at an opener ends at the first ``}</imgen>`` after its ``{``; when there
    is none, no later opener can match either. (The regex itself rescans to the end of the
    text from every opener that has no closer: quadratic time on a hostile answer.)

    >>> find_slots("a <imgen>{x}</imgen> <imgen>{y} </imgen>")
    [(2, 20)]
    """
    out: list[tuple[int, int]] = []
    at = text.find(_OPEN)
    while at >= 0:
        close = text.find(_CLOSE, at + len(_OPEN))
        if close < 0:
            break
        end = close + len(_CLOSE)
        out.append((at, end))
        at = text.find(_OPEN, end)
    return out
RAW_CODE = re.compile(
    r"\s*\{'source': 'code', 'description': '([^']*)', 'params': \{'code': '(.*)'\}\}\s*\Z", re.DOTALL
)
_RAW_CODE_HINT = "'source': 'code'"


def read_body(body: str, position: int, exact_code: bool) -> dict[Any, Any]:
    """The dict LLM-I reads from ``body``; ``TagSyntaxError`` where it reads none.

    With ``exact_code``, code taken raw by the fixed layout has its escapes decoded here, once
    and without re-encoding (LLM-I leaves that to ``unicode_escape`` in ``sanitize_code``).

    >>> read_body("{'source': 'code', 'description': 'd', 'params': {'code': 'plt.plot([1, 2])\\\\nplt.title('x')'}}", 0, False)["params"]["code"]
    "plt.plot([1, 2])\\\\nplt.title('x')"
    """
    if _RAW_CODE_HINT in body:
        m = RAW_CODE.match(body)
        if m:
            code = decode_code(m.group(2)) if exact_code else m.group(2)
            return {"source": "code", "description": m.group(1), "params": {"code": code}}
    try:
        with warnings.catch_warnings():
            quiet_escape_warnings()
            obj = ast.literal_eval(body)
    except Exception as exc:  # noqa: BLE001 - LLM-I reads any failure as "no tag"
        detail = exc.msg if isinstance(exc, SyntaxError) and exc.msg else type(exc).__name__
        raise TagSyntaxError(
            f"cannot read the tag as a Python dict literal, the only form LLM-I reads ({detail})", position
        ) from None
    if not isinstance(obj, dict):
        raise TagSyntaxError(
            f"the tag holds a {type(obj).__name__}, not a dict; LLM-I reads only a dict literal", position
        )
    return obj


_FENCE_HEAD = re.compile(r"^```(?:python)?", re.IGNORECASE)
_FENCE_TAIL = re.compile(r"```$")


def sanitize_code(code: str) -> str:
    """Chart code as LLM-I prepares it: a leading fence (```` ``` ```` or ```` ```python ````,
    any case) and a trailing one removed, surrounding whitespace stripped, then
    ``unicode_escape`` decoding (which turns UTF-8 text into Latin-1 mojibake); where that
    fails, only ``\\n``, ``\\t``, ``\\"`` and ``\\'`` are replaced.

    >>> sanitize_code("```python\\n  x = 1\\\\ny = 2\\n```")
    'x = 1\\ny = 2\\n'
    >>> sanitize_code("plt.title('温度')")
    "plt.title('æ¸©åº¦')"
    """
    code = _FENCE_HEAD.sub("", code.strip())
    code = _FENCE_TAIL.sub("", code.strip())
    try:
        with warnings.catch_warnings():
            quiet_escape_warnings()
            return codecs.decode(code, "unicode_escape")
    except Exception:  # noqa: BLE001 - e.g. a truncated \x escape, a lone surrogate
        return code.replace("\\n", "\n").replace("\\t", "\t").replace('\\"', '"').replace("\\'", "'")


def index_problem(index: int, own: int, n_inputs: int) -> str | None:
    """Why ``img_index`` of tag ``own`` cannot be edited, or ``None`` if it names an input image
    or an earlier tag's image (index ``n_inputs + k`` is tag ``k``'s)."""
    k = index - n_inputs
    if 0 <= index < n_inputs or 0 <= k < own:
        return None
    if n_inputs:
        return (
            f"img_index {index} refers to no earlier image: there are {n_inputs} input "
            f"image{'s' if n_inputs != 1 else ''} (0..{n_inputs - 1}) and only earlier tags can "
            f"be edited (their indices start at {n_inputs})"
        )
    return (
        f"img_index {index} refers to no earlier image: there are no input images, so index k "
        "means the k-th earlier tag (counting from 0)"
    )


def range_problem(index: int, images: int) -> str:
    """LLM-I's validity bound: ``img_index`` names one of the inputs or one of the tags."""
    return f"img_index {index} is outside 0..{images - 1} (the input images, then the answer's tags)"


def index_rule(objs: Sequence[Any], n_inputs: int) -> list[str | None]:
    """LLM-I's scheduling of edits: for each tag, why the scheduler never runs it, or ``None``.

    ``objs`` holds each slot's read dict (anything else for an unreadable body). An edit never
    runs when its ``img_index`` is not a number ``int()`` reads, is outside ``0..M+T-1``,
    points at itself or a later tag, or points at a tag that never ran (an unreadable one, or
    an edit that never ran). LLM-I counts such an edit as a failed edit whether or not it
    passes the validity rules, which it never reaches.
    """
    total = len(objs)
    runs: list[bool] = []
    out: list[str | None] = []
    for own, obj in enumerate(objs):
        if not isinstance(obj, dict) or "source" not in obj:
            runs.append(False)  # unreadable: never counted, never produces an image
            out.append(None)
            continue
        reason = _edit_reason(obj, own, n_inputs, total, runs) if obj["source"] == "edit" else None
        runs.append(reason is None)
        out.append(reason)
    return out


def _edit_reason(obj: dict[Any, Any], own: int, n_inputs: int, total: int, runs: list[bool]) -> str | None:
    try:
        raw = obj["params"].get("img_index", -1)
        index = int(raw)
    except Exception:  # noqa: BLE001 - LLM-I turns any failure here into "cannot run"
        return "the edit has no usable img_index (LLM-I reads it with int())"
    if not 0 <= index < n_inputs + total:
        return range_problem(index, n_inputs + total)
    problem = index_problem(index, own, n_inputs)
    if problem is not None:
        return problem
    k = index - n_inputs
    if k >= 0 and not runs[k]:
        return f"cannot edit image {index}: tag {k} never produced an image (it could not be read or run)"
    return None
