"""Rule rewards: what can be scored without a judge.

Each rule is a plain function with a doctest. The ones that take a ``Document`` read it as it
was read (``Engine(profile=...)``): under the ``llmi-compat`` profile they give LLM-I's numbers
exactly, under ``llmi`` they see llmi's tolerant reading.

>>> image_num_score(2, 3)            # training: 2 of the 3 images asked for
0.6666666666666666
>>> image_num_score(2, 3, train=False)  # evaluation: exactly 3 or nothing
0.0
>>> r_tool({"code": {"total": 1, "success": 1}}, ["code", "search"])
0.6666666666666666
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document

__all__ = [
    "ANY_IMAGES",
    "NO_IMAGES",
    "TOOL_WEIGHTS",
    "check_image_num",
    "image_count",
    "image_count_score",
    "image_num_score",
    "r_tool",
    "tag_validity",
]

#: ``extra_info.image_num`` values with a special meaning (any other N >= 1 asks for N images)
NO_IMAGES, ANY_IMAGES = -1, 99

#: LLM-I's difficulty weights for the tool reward
TOOL_WEIGHTS: Mapping[str, float] = {"code": 0.4, "edit": 0.3, "search": 0.2, "diffusion": 0.1}

_TAG_ERRORS = ("TagSyntaxError", "TagValidationError")


def check_image_num(value: Any) -> int:
    """``extra_info.image_num`` as an int: -1, 0, 99 or a positive count.

    Integral floats (``3.0`` from a JSON or parquet row) and numpy integers are accepted;
    booleans, strings and other negatives are refused with a message naming the field.

    >>> check_image_num(3.0)
    3
    >>> check_image_num(-2)
    Traceback (most recent call last):
    ...
    llmi.errors.ConfigError: extra_info.image_num must be -1 (no image), 0 (any number), 99 (at least one) or a positive count, not -2
    """
    if isinstance(value, bool):
        raise ConfigError(f"extra_info.image_num must be an integer, not {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        n = operator.index(value)
    except TypeError:
        raise ConfigError(f"extra_info.image_num must be an integer, not {value!r}") from None
    if n < NO_IMAGES:
        raise ConfigError(
            "extra_info.image_num must be -1 (no image), 0 (any number), 99 (at least one) or a "
            f"positive count, not {n}"
        )
    return n


def image_num_score(k: int, image_num: int, *, train: bool = True) -> float:
    """LLM-I's image-count score for ``k`` images when the item asks for ``image_num``.

    ``-1``: 1 only without images; ``0``: always 1; ``99``: 1 with at least one image.
    ``N``: in training ``k/N`` below N, 1 at N and ``max(0, 1 - 0.3 (k - N))`` above; in
    evaluation (``train=False``) 1 only at exactly N.

    >>> [image_num_score(k, -1) for k in (0, 1)], image_num_score(7, 0), [image_num_score(k, 99) for k in (0, 2)]
    ([1.0, 0.0], 1.0, [0.0, 1.0])
    >>> [round(image_num_score(k, 2), 4) for k in range(7)]
    [0.0, 0.5, 1.0, 0.7, 0.4, 0.1, 0.0]
    """
    n = check_image_num(image_num)
    if n == NO_IMAGES:
        return 1.0 if k == 0 else 0.0
    if n == 0:
        return 1.0
    if n == ANY_IMAGES:
        return 1.0 if k > 0 else 0.0
    if not train:
        return 1.0 if k == n else 0.0
    if k <= n:
        return k / n
    return max(0.0, 1.0 - 0.3 * (k - n))


def image_count(doc: "Document", *, typed_image: Literal["count", "ignore"] = "count") -> int:
    """``k``, the number of images the reward counts in ``doc``.

    ``typed_image="count"`` is LLM-I's rule: the ``<image>`` markers in the judge view, so an
    ``<image>`` the model typed itself counts as an image (under the ``llmi-compat`` profile).
    ``"ignore"`` counts only images a tool produced.

    >>> from llmi.document import Document, TextSegment
    >>> image_count(Document((TextSegment("no pictures"),)))
    0
    """
    if typed_image == "ignore":
        return len(doc.images)
    return doc.judge_view().count("<image>")


def image_count_score(
    doc: "Document",
    image_num: int,
    *,
    split: str = "train",
    typed_image: Literal["count", "ignore"] = "count",
) -> float:
    """The image-count score of a document: training variant when ``split == "train"``.

    >>> from llmi.document import Document, TextSegment
    >>> image_count_score(Document((TextSegment("prose only"),)), -1)
    1.0
    """
    return image_num_score(image_count(doc, typed_image=typed_image), image_num, train=split == "train")


def r_tool(
    stats: Mapping[str, Mapping[str, Any]],
    tools: Iterable[str] | None,
    *,
    weights: Mapping[str, float] = TOOL_WEIGHTS,
) -> float:
    """LLM-I's tool reward: did the answer use the tools the item needs?

    ``tools`` is ``extra_info.tools``. With ``R`` the required set, a tool is *attempted* when
    ``stats[tool]["total"] > 0`` and *succeeded* when ``success > 0``;
    ``r_tool = 0.5 * weighted share of R succeeded + 0.5 * weighted share of R attempted``
    (weights code 0.4, edit 0.3, search 0.2, diffusion 0.1). No required tools gives 0.0;
    required tools that all weigh nothing give 1.0 when no tool was attempted, else 0.0.

    >>> stats = {"search": {"total": 2, "success": 0}, "code": {"total": 1, "success": 1}}
    >>> r_tool(stats, ["search", "code"])  # both attempted, only code succeeded
    0.8333333333333333
    >>> r_tool(stats, [])
    0.0
    """
    required = set(tools or ())
    if not required:
        return 0.0
    rows = {name: row for name, row in stats.items() if name in TOOL_WEIGHTS}
    attempted = {name for name, row in rows.items() if row.get("total", 0) > 0}
    succeeded = {name for name, row in rows.items() if row.get("success", 0) > 0}
    total = sum(weights.get(t, 0.0) for t in required)
    if total == 0:
        return 1.0 if not attempted else 0.0
    r_attempt = sum(weights.get(t, 0.0) for t in required & attempted) / total
    r_success = sum(weights.get(t, 0.0) for t in required & succeeded) / total
    return 0.5 * r_success + 0.5 * r_attempt


def tag_validity(doc: "Document", *, lenient: Literal["accept", "invalid"] = "accept") -> float:
    """The share of the document's tags that could be read and validated (1.0 without tags).

    A tag whose tool failed is still a valid tag; one that could not be parsed, or named an
    unknown source or wrong params, is not. ``lenient="invalid"`` also refuses tags llmi could
    read only with its lenient reader (bodies that are not valid Python or JSON literals).

    >>> from llmi.engine import Engine
    >>> with Engine() as engine:
    ...     doc = engine.run("<imgen>{'source': 'photo', 'description': 'd', 'params': {}}</imgen>"
    ...                      "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>")
    >>> tag_validity(doc)
    0.5
    """
    from .view import read_leniently

    segments = doc.image_segments
    if not segments:
        return 1.0
    valid = sum(
        1
        for seg in segments
        if seg.error_type not in _TAG_ERRORS and not (lenient == "invalid" and read_leniently(seg))
    )
    return valid / len(segments)
