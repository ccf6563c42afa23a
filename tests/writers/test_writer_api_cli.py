"""``llmi.generate`` / ``llmi.render`` and the ``llmi generate`` command, end to end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import llmi
from llmi.cli.generate import generate as generate_cmd
from llmi.engine import Engine
from llmi.errors import WriterError
from llmi.image import ImageData
from llmi.llm import OpenAIWriter, Sampling

from writer_fixtures import ANSWER, DRIP_TAIL, free_port


def test_generate_with_an_endpoint_writer_returns_the_document(scripted, tmp_path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(ImageData.blank(4, 4, "blue").data)
    engine = Engine({})  # no tools: the search tag fails visibly, and says how to configure one
    doc = llmi.generate("Tell me about owls.", images=[str(photo)], engine=engine,
                        writer=OpenAIWriter(scripted.base("ok"), model="m"), sampling=Sampling(seed=3))
    assert doc.meta["writer"] == "m" and doc.meta["prompt"] == "Tell me about owls."
    assert [s.tool for s in doc.image_segments] == ["search"]
    assert doc.image_segments[0].status == "failed"
    assert len(doc.inputs) == 1 and doc.inputs[0].width == 4  # the prompt's image is input 0
    sent = scripted.posts("ok")[-1]["body"]["messages"]
    assert sent[0]["role"] == "system" and "<imgen>" in sent[0]["content"]
    assert sent[-1]["content"][1]["type"] == "image_url"


def test_generate_streams_text_to_a_callback_and_works_inside_a_running_loop(scripted) -> None:
    seen: list[str] = []

    async def inside_loop():  # a notebook: the sync API must not trip over the running loop
        return llmi.generate("owls", writer=OpenAIWriter(scripted.base("ok"), model="m"),
                             engine=Engine({}), on_text=seen.append, system_prompt="Be brief.")

    doc = asyncio.run(inside_loop())
    assert "".join(seen) == ANSWER and len(seen) > 1
    assert doc.text.startswith("Owls hunt at night.")


def test_input_images_by_url_go_through_the_safe_fetcher(scripted) -> None:
    from llmi.api import load_inputs
    from llmi.fetch import FetchPolicy, SafeFetcher

    loopback = SafeFetcher(FetchPolicy.allowing_loopback())
    (img,) = asyncio.run(load_inputs([f"{scripted.url}/x/img.png"], fetcher=loopback))
    assert (img.width, img.height) == (5, 3)
    with pytest.raises(WriterError, match="cannot use the input image.*pass the file instead"):
        asyncio.run(load_inputs([f"{scripted.url}/x/text.png"], fetcher=loopback))
    with pytest.raises(WriterError, match="cannot use the input image"):  # loopback refused by default
        asyncio.run(load_inputs([f"{scripted.url}/x/img.png"]))


def test_render_defaults_to_the_environment_engine() -> None:
    doc = llmi.render("Only words here.")
    assert doc.text == "Only words here." and doc.image_segments == ()


def test_empty_answer_is_a_writer_error(scripted) -> None:
    class Silent:
        name = "silent"

        async def stream(self, messages, sampling=None):
            if False:
                yield ""

    with pytest.raises(WriterError, match="returned no text"):
        llmi.generate("owls", writer=Silent(), engine=Engine({}))


# -- the command ---------------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    clean = {name: None for name in ("LLMI_BASE_URL", "LLMI_MODEL", "LLMI_MODEL_NAME", "LLMI_API_KEY", "OPENAI_API_KEY")}
    result = CliRunner().invoke(generate_cmd, list(args), env=clean)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["   "], "the prompt is empty"),
        ([], "no prompt"),
        (["x", "--image", "/nonexistent/photo.png"], "cannot read the image"),
        (["x", "--model", "/nonexistent/model.gguf"], "no model file at"),
        (["x", "--model-name", "m"], "needs --base-url"),
        (["x", "--system-prompt", "/nonexistent/system.txt"], "cannot read the system prompt file"),
        (["x", "--temperature", "9"], "temperature must be between 0 and 2"),
    ],
)
def test_command_errors_are_one_line_exit_2(args: list[str], message: str, tmp_path) -> None:
    code, out = invoke(*args, "--out", str(tmp_path / "o"))
    assert code == 2, out
    assert message in out and "Traceback" not in out
    assert not (tmp_path / "o").exists()


def test_command_reports_unreachable_endpoint(tmp_path) -> None:
    code, out = invoke("owls", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model-name", "m",
                       "--retries", "0", "--out", str(tmp_path / "o"))
    assert code == 2 and "cannot reach the writer endpoint" in out and "Traceback" not in out


def test_command_with_endpoint_writes_the_document(scripted, tmp_path) -> None:
    out_dir = tmp_path / "doc"
    code, out = invoke("Tell me about owls.", "--base-url", scripted.base("ok"), "--out", str(out_dir),
                       "--format", "md,json")
    assert code == 0, out
    assert "Owls hunt at night." in out  # the streamed text
    assert sorted(p.name for p in out_dir.iterdir()) == ["document.json", "document.md"]
    data = json.loads((out_dir / "document.json").read_text())
    assert "Owls hunt at night." in json.dumps(data)


def _llmi(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("LLMI_BASE_URL", "LLMI_MODEL", "LLMI_MODEL_NAME", "LLMI_API_KEY", "OPENAI_API_KEY"):
        env.pop(name, None)
    llmi_bin = Path(sys.executable).with_name("llmi")  # the installed console script
    return subprocess.run([str(llmi_bin), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_command_shows_tool_progress_while_the_text_streams(scripted, tmp_path) -> None:
    # The endpoint pauses after the tag: the (failed, unconfigured) search is reported on the
    # line after the tag, before the rest of the text arrives.
    code, out = invoke("Tell me about owls.", "--base-url", scripted.base("drip"), "--out", str(tmp_path / "d"))
    assert code == 0, out
    lines = out.splitlines()
    tag_line = next(i for i, line in enumerate(lines) if line.startswith("<imgen>"))
    progress = next(i for i, line in enumerate(lines) if "#0 search" in line)
    tail = next(i for i, line in enumerate(lines) if line == DRIP_TAIL.strip())
    assert tag_line < progress < tail
    assert "0 of 1 image made" in out


def test_generate_runs_tags_while_the_writer_writes(tmp_path) -> None:
    # A writer that will not go on until the engine reports the chart as done: the document can
    # only be finished if the tag ran while the writer was still writing.
    import threading

    from llmi.testing import LatencyTool

    done = threading.Event()

    class Patient:
        name = "patient"

        async def stream(self, messages, sampling=None):
            yield "A chart:\n<imgen>{'source': 'code', 'description': 'c', 'params': {'code': 'plt.plot([1])'}}</imgen>\n"
            for _ in range(500):
                if done.is_set():
                    break
                await asyncio.sleep(0.01)
            yield "It was drawn before this sentence was written." if done.is_set() else "Too late."

    engine = Engine({"code": LatencyTool("code", latency=0.05)},
                    on_event=lambda e: done.set() if e.kind == "done" else None)
    doc = llmi.generate("a chart", writer=Patient(), engine=engine)
    assert doc.text.endswith("It was drawn before this sentence was written.")
    assert doc.image_segments[0].ok and "tools_after_text" in doc.meta


def test_llmi_generate_offline_default_writes_html_md_json(tmp_path) -> None:
    pytest.importorskip("llama_cpp")
    proc = _llmi("generate", "Tell me about red foxes.", "--seed", "1", "--max-tokens", "60", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = list((tmp_path / "out").iterdir())  # the default: a new folder under ./out/
    assert len(docs) == 1
    names = sorted(p.name for p in docs[0].iterdir() if p.is_file())
    assert {"index.html", "document.md", "document.json"} <= set(names)
    data = json.loads((docs[0] / "document.json").read_text())
    assert "SmolLM2" in json.dumps(data)  # the writer is recorded
    assert "writer: SmolLM2-135M-Instruct" in proc.stderr


@pytest.mark.slow
def test_llmi_generate_against_the_real_llama_server(llama_server: str, tmp_path) -> None:
    proc = _llmi("generate", "Tell me about red foxes.", "--base-url", llama_server, "--max-tokens", "48",
                 "--seed", "2", "--out", "fox", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "fox" / "document.json").read_text())
    assert "smollm2" in json.dumps(data)
