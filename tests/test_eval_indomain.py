"""In-domain rows: reading LLM-I's layout (text and chat prompts, images, extra_info) and
rows that cannot be evaluated failing alone, with the reason."""

from __future__ import annotations

import base64
import json

import pytest

from llmi.engine import Engine
from llmi.errors import ConfigError
from llmi.evaluate.indomain import InDomainBenchmark, load_rows
from llmi.image import ImageData
from llmi.rewards.scorer import RewardScorer


def _bench(tmp_path, rows, **kwargs):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return InDomainBenchmark(path, RewardScorer(Engine(), llm_judge=None, mllm_judge=None), **kwargs)


def _info(**kw):
    return {"image_num": 1, "question": "q", "tools": ["code"], "split": "test", **kw}


def test_rows_of_every_shape(tmp_path):
    (tmp_path / "in.png").write_bytes(ImageData.blank(3, 3).data)
    bench = _bench(tmp_path, [
        {"prompt": "Plain text.", "extra_info": _info(index=7)},
        {"prompt": [{"role": "system", "content": "dataset's own"}, {"role": "user", "content": "Look <image> here."}],
         "images": [{"path": "in.png"}], "data_source": "interleaved_mm", "extra_info": _info(index=8)},
        {"prompt": "No info."},
        {"prompt": "Bad count.", "extra_info": _info(image_num=-5)},
        {"prompt": "", "extra_info": _info()},
        {"prompt": "Broken image.", "images": [{"bytes": "not an image"}], "extra_info": _info()},
        {"prompt": "Base64 image.", "images": [{"bytes": base64.b64encode(ImageData.blank(2, 2).data).decode()}],
         "extra_info": _info()},
    ])
    items = bench.rows
    assert [it.key for it in items[:2]] == ["7", "8"]
    assert items[0].prompt == "Plain text." and items[1].prompt == "Look   here."  # the placeholder goes, the image stays
    assert "dataset's own" not in items[1].prompt and len(items[1].images) == 1 and items[1].data_source == "interleaved_mm"
    assert items[-1].problem is None and items[-1].images[0].width == 2
    problems = [it.problem for it in items[2:-1]]
    assert all(problems) and "extra_info" in problems[0] and "image_num" in problems[1] and "empty" in problems[2]
    assert "image" in problems[3]


def test_split_selection_and_unique_keys(tmp_path):
    bench = _bench(tmp_path, [{"prompt": "a", "extra_info": _info(split="train", index=1)},
                              {"prompt": "b", "extra_info": _info(index=1)}, {"prompt": "c", "extra_info": _info(index=1)}],
                   split="test")
    assert [it.prompt for it in bench.rows] == ["b", "c"] and [it.key for it in bench.rows] == ["0", "1"]
    with pytest.raises(ConfigError, match="no rows"):
        _bench(tmp_path, [{"prompt": "a", "extra_info": _info(split="train")}], split="test")


def test_parquet_errors(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ConfigError, match="cannot read the parquet"):
        load_rows(bad)
