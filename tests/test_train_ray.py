"""`llmi train verl RECIPE` without --check: a real submission to a real (one-node, CPU) Ray cluster.

verl's entry point runs there with ``--cfg job``: Hydra composes the recipe's configuration on the
cluster and prints it, without training (there is no GPU here). Slow: Ray takes a while to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("verl")
pytest.importorskip("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_submit_runs_verl_on_the_ray_cluster_with_the_workers_environment(tmp_path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    from llmi.train.recipe import load_recipe, plan
    from llmi.train.verl import submit

    port, dashboard = free_port(), free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dashboard}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=1", "--disable-usage-stats",
         f"--temp-dir={tmp_path / 'ray'}"],
        stdout=open(tmp_path / "ray.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        client = _wait_for(address, head, tmp_path)
        recipe = load_recipe("grpo-qwen3-4b")
        recipe = recipe.model_copy(update={"cluster": recipe.cluster.model_copy(update={"python": sys.executable})})
        env = {"LLM_JUDGE_BASE_URL": "http://judge:1/v1", "MLLM_JUDGE_BASE_URL": "http://judge:2/v1",
               "ARK_API_KEY": "ark-key", "SERP_API_KEY": "serp-key", "EDIT_BACKBONE": "qwen",
               "QWEN_EDIT_SERVER_URL": "http://edit:8100"}
        the_plan = plan(recipe, env, base_dir=tmp_path)
        job = submit(the_plan, address, extra_args=["--cfg", "job"])
        deadline = time.monotonic() + 300
        while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            assert time.monotonic() < deadline, client.get_job_logs(job)
            time.sleep(1)
        logs = client.get_job_logs(job)
        assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs
        assert "LlmiRewardManager" in logs and "pkg://llmi.rewards.verl" in logs and "clip_ratio_c: 10.0" in logs
        info = client.get_job_info(job)
        assert info.runtime_env["env_vars"]["EDIT_BACKBONE"] == "qwen"
        assert info.runtime_env["env_vars"]["ARK_API_KEY"] == "ark-key"
        assert info.metadata["llmi_recipe"] == "grpo-qwen3-4b"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def _wait_for(address: str, head: subprocess.Popen, tmp_path: Path):
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + 240
    while True:
        if head.poll() is not None:
            pytest.fail(f"ray start exited: {(tmp_path / 'ray.log').read_text()[-2000:]}")
        try:
            return JobSubmissionClient(address)
        except (ConnectionError, RuntimeError, ValueError):
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray dashboard did not come up: {(tmp_path / 'ray.log').read_text()[-2000:]}")
            time.sleep(2)
