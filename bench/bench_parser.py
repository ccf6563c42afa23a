"""Parser throughput: tags per second on a realistic mix of model output.

    python bench/bench_parser.py [--seconds 1.0]

The mix (per 20 tags): 12 valid Python-literal tags (search, diffusion, edit, code with ``\\n``
escapes, one Chinese), 3 JSON tags, 2 copies of the LLM-I prompt's sine-wave example (not a valid
literal: read by the lenient reader), 3 malformed tags (unknown source, bool img_index, missing
comma). Each document holds the 20 tags with prose between them, as a rollout would.

Baseline, measured in the same run: what the LLM-I code does per document (a regex for the tags,
then ``ast.literal_eval`` on each, no validation), which reads neither the sine example nor JSON
booleans. The ratio says what the stricter, more tolerant parser costs or saves. The same mix is
also parsed with the ``llmi-compat`` profile (LLM-I's reading, validity and counting rules).
"""

from __future__ import annotations

import argparse
import ast
import re
import time

from llmi.tags import parse

SINE = (
    "<imgen>{'source': 'code', 'description': 'Sine Wave from 0 to 4pi', 'params': {'code': "
    "'x = np.linspace(0, 4 * np.pi, 200)\\ny = np.sin(x)\\nplt.figure(figsize=(10, 4))\\nplt.plot(x, y)"
    '\\nplt.title("Sine Wave from 0 to 4pi")\\nplt.xlabel("Angle [rad]")\\nplt.ylabel("sin(x)")'
    "\\nplt.grid(True)\\nplt.axhline(y=0, color='k', linestyle='--')'}}</imgen>"
)
CODE = (
    "<imgen>{'source': 'code', 'description': 'Monthly sales', 'params': {'code': "
    '\'months = ["Jan", "Feb", "Mar", "Apr"]\\nsales = [120, 135, 150, 170]\\n'
    'plt.figure(figsize=(8, 4))\\nplt.bar(months, sales, color="steelblue")\\n'
    'plt.title("Sales by month")\\nplt.ylabel("Units")\'}}</imgen>'
)
CODE_ZH = (
    "<imgen>{'source': 'code', 'description': '各季度销售额', 'params': {'code': "
    '\'q = ["一季度", "二季度", "三季度", "四季度"]\\nv = [3.2, 4.1, 3.8, 5.0]\\n'
    'plt.plot(q, v, marker="o")\\nplt.title("销售额（万元）")\'}}</imgen>'
)
SEARCH = "<imgen>{'source': 'search', 'description': 'The Eiffel Tower at dusk', 'params': {'query': 'Eiffel Tower at dusk'}}</imgen>"
DIFFUSION = (
    "<imgen>{'source': 'diffusion', 'description': 'A fox in a snowy forest', 'params': {'prompt': "
    "'a red fox standing in a snowy pine forest at dawn, soft light, watercolour style'}}</imgen>"
)
EDIT = "<imgen>{'source': 'edit', 'description': 'The fox in spring', 'params': {'img_index': 1, 'prompt': 'replace the snow with green grass and flowers'}}</imgen>"
JSON_SEARCH = '<imgen>{"source": "search", "description": "A snowy owl", "params": {"query": "snowy owl in flight"}}</imgen>'
JSON_EDIT = '<imgen>{"source": "edit", "description": "d", "params": {"img_index": 0, "prompt": "make the sky orange"}}</imgen>'
BAD_SOURCE = "<imgen>{'source': 'image', 'description': 'd', 'params': {'query': 'owl'}}</imgen>"
BAD_BOOL = "<imgen>{'source': 'edit', 'description': 'd', 'params': {'img_index': True, 'prompt': 'p'}}</imgen>"
BAD_COMMA = "<imgen>{'source': 'search' 'description': 'd', 'params': {'query': 'owl'}}</imgen>"

MIX = [
    SEARCH,
    DIFFUSION,
    CODE,
    EDIT,
    SEARCH,
    CODE_ZH,
    DIFFUSION,
    CODE,
    SEARCH,
    EDIT,
    CODE,
    DIFFUSION,
    JSON_SEARCH,
    JSON_EDIT,
    JSON_SEARCH,
    SINE,
    SINE,
    BAD_SOURCE,
    BAD_BOOL,
    BAD_COMMA,
]
PROSE = (
    "The next paragraph explains the idea in a few sentences, with some detail about the topic. "
)
DOCUMENT = "".join(PROSE + tag + "\n" for tag in MIX) + PROSE
GROUPS = {
    "python-literal": [SEARCH, DIFFUSION, CODE, EDIT, CODE_ZH],
    "json": [JSON_SEARCH, JSON_EDIT],
    "sine example (lenient)": [SINE],
    "malformed": [BAD_SOURCE, BAD_BOOL, BAD_COMMA],
}

_LLMI_TAG = re.compile(r"<imgen>({.*?})</imgen>", re.DOTALL)


def llmi_baseline(text: str) -> list[object]:
    out = []
    for body in _LLMI_TAG.findall(text):
        try:
            out.append(ast.literal_eval(body))
        except Exception:  # noqa: BLE001 - as LLM-I does
            out.append(None)
    return out


def parse_compat(text: str):
    return parse(text, "llmi-compat", inputs=1)


def rate(fn, text: str, tags_per_call: int, seconds: float) -> float:
    """Tags per second of ``fn(text)``, best of three runs of about ``seconds`` each."""
    best = 0.0
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(20):
                fn(text)
            calls += 20
        best = max(best, calls * tags_per_call / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = ap.parse_args()

    parsed = parse(DOCUMENT)
    assert len(parsed.tags) == len(MIX)
    assert sum(t.ok for t in parsed.tags) == len(MIX) - 3, [
        t.error for t in parsed.tags if not t.ok
    ]

    print(f"document: {len(MIX)} tags, {len(DOCUMENT)} characters")
    for name, tags in GROUPS.items():
        text = "".join(PROSE + t for t in tags)
        print(f"  {name:<24} {rate(parse, text, len(tags), args.seconds / 3):>10,.0f} tags/s")
    ours = rate(parse, DOCUMENT, len(MIX), args.seconds)
    base = rate(llmi_baseline, DOCUMENT, len(MIX), args.seconds)
    print(
        f"  {'mix (llmi.tags.parse)':<24} {ours:>10,.0f} tags/s   ({ours / len(MIX):,.0f} documents/s)"
    )
    compat = rate(parse_compat, DOCUMENT, len(MIX), args.seconds)
    print(
        f"  {'mix (llmi-compat)':<24} {compat:>10,.0f} tags/s   ({sum(t.ok for t in parse_compat(DOCUMENT).tags)}/{len(MIX)} valid)"
    )
    print(
        f"  {'mix (LLM-I regex+eval)':<24} {base:>10,.0f} tags/s   (reads {sum(x is not None for x in llmi_baseline(DOCUMENT))}/{len(MIX)}, no validation)"
    )
    print(f"  ratio llmi/LLM-I: {ours / base:.2f}x   llmi-compat/LLM-I: {compat / base:.2f}x")

    # A hostile answer: openers that are never closed. LLM-I's regex rescans to the end of the
    # text from each of them; the compat profile finds the same (no) tags in one pass.
    hostile = "<imgen>{x " * 2000
    started = time.perf_counter()
    _LLMI_TAG.findall(hostile)
    regex_s = time.perf_counter() - started
    started = time.perf_counter()
    parse_compat(hostile)
    compat_s = time.perf_counter() - started
    print(
        f"  {len(hostile) // 1000} KB of unclosed <imgen>{{: LLM-I's regex {regex_s * 1000:,.0f} ms, "
        f"llmi-compat parse {compat_s * 1000:,.2f} ms ({regex_s / compat_s:,.0f}x)"
    )


if __name__ == "__main__":
    main()
