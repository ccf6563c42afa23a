"""`llmi render` end to end: the real sandbox, the offline editor, the renderers, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mixed-answer.txt"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "doc"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMI_", "QWEN_"))}
    env["LLMI_HOME"] = str(out.parent / "home")  # no image library: search is unconfigured
    proc = subprocess.run(
        [sys.executable, "-m", "llmi.cli", "render", str(EXAMPLE), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc.stderr


def test_summary_says_what_worked(rendered):
    _, stderr = rendered
    assert "4 of 6 images made" in stderr
    assert "TagValidationError: unknown source 'painting'" in stderr
    assert "ToolNotConfigured" in stderr


def test_json_records_each_image(rendered):
    out, _ = rendered
    doc = json.loads((out / "document.json").read_text())
    images = [s for s in doc["segments"] if s["type"] == "image"]
    assert [(s["tool"], s["status"]) for s in images] == [
        ("code", "ok"), ("edit", "ok"), (None, "failed"), ("code", "ok"), ("code", "ok"), ("search", "failed"),
    ]
    assert images[1]["backend"] == "classical"
    assert images[2]["error_type"] == "TagValidationError"
    assert images[5]["error_type"] == "ToolNotConfigured" and "SERP_API_KEY" in images[5]["error"]
    for seg in images:
        assert (seg["path"] is not None) == (seg["status"] == "ok")
        if seg["path"]:
            assert (out / seg["path"]).is_file()
    assert doc["stats"]["code"] == {"total": 3, "success": 3, "success_rate": 1.0}
    assert doc["judge_view"].count("<image>") == 4 and doc["judge_view"].count("<fail_to_generate_image>") == 2
    assert "x = np.linspace(0, 4 * np.pi, 200)\ny = np.sin(x)" in images[3]["request"]["params"]["code"]


def test_edit_is_a_grey_copy_of_the_chart(rendered):
    from PIL import Image

    out, _ = rendered
    doc = json.loads((out / "document.json").read_text())
    images = [s for s in doc["segments"] if s["type"] == "image"]
    chart = Image.open(out / images[0]["path"]).convert("RGB")
    grey = Image.open(out / images[1]["path"]).convert("RGB")
    assert chart.size == grey.size
    import numpy as np

    c, g = np.asarray(chart).astype(int), np.asarray(grey).astype(int)
    assert (c.max(axis=2) - c.min(axis=2)).max() > 50  # the chart has colour
    assert (g.max(axis=2) - g.min(axis=2)).max() == 0  # the edit has none


def test_html_and_markdown_show_failures(rendered):
    out, _ = rendered
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert "ToolNotConfigured" in html and "城市气温" in html
    md = (out / "document.md").read_text()
    assert md.count("](images/") == 4
    assert "unknown source 'painting'" in md
