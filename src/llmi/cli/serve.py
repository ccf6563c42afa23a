"""``llmi serve image``: one image server, or one per GPU with ``--gpus``."""

from __future__ import annotations

import logging
import sys

import click

from ..errors import LlmiError

__all__ = ["serve"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def serve() -> None:
    """Run llmi servers."""


@serve.command("image")
@click.option(
    "--mode",
    type=click.Choice(["generation", "edit"]),
    default="generation",
    show_default=True,
    help="generation serves POST /generate/ (Qwen-Image); edit serves POST /edit/ (Qwen-Image-Edit).",
)
@click.option(
    "--model",
    "--model-path",
    "model",
    required=True,
    help="Diffusers pipeline folder or Hub id (e.g. Qwen/Qwen-Image, Qwen/Qwen-Image-Edit); "
    "'tiny' builds a tiny random pipeline (demos, tests).",
)
@click.option(
    "--gpus",
    default=None,
    help="Comma-separated GPU indices: one server per GPU on ports PORT, PORT+1, ... "
    "'cpu' entries run CPU servers (e.g. cpu,cpu). Without it, one server runs here.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Single-server device: auto, cpu, cuda, cuda:N.",
)
@click.option(
    "--dtype",
    type=click.Choice(["auto", "bfloat16", "float16", "float32"]),
    default="auto",
    show_default=True,
    help="auto: bfloat16 on GPUs, float32 on CPU.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Use 0.0.0.0 or :: to serve other hosts.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port (the first port with --gpus).")
@click.option("--queue-size", default=16, show_default=True, type=int, help="Requests that may wait; more get 503.")
@click.option("--max-side", default=2048, show_default=True, type=int, help="Largest height/width accepted.")
@click.option("--max-steps", default=200, show_default=True, type=int, help="Most num_inference_steps accepted.")
@click.option(
    "--max-input-pixels",
    default=4096 * 4096,
    show_default=True,
    type=int,
    help="Largest edit input image, in pixels.",
)
@click.option(
    "--max-body-mb", default=64, show_default=True, type=int, help="Largest request body, in MB."
)
@click.option(
    "--edit-max-pixels",
    default=None,
    type=int,
    help="Shrink Qwen-Image-Edit's condition image (normally ~1024x1024) to at most this many "
    "pixels. For tests and CPU demos; the real model is trained at ~1 MP.",
)
@click.option("--threads", default=None, type=int, help="torch CPU threads per server.")
@click.option("--cpu-offload", is_flag=True, help="Offload idle sub-models to CPU (less GPU memory, slower).")
@click.option(
    "--shutdown-grace",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds to finish in-flight requests on shutdown before cancelling them.",
)
@click.option("--max-restarts", default=3, show_default=True, type=int, help="Restarts per crashed server (--gpus).")
@click.option("--ready-timeout", default=900.0, show_default=True, type=float, help="Seconds to wait for each server to load (--gpus).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--no-access-log", is_flag=True, help="Do not log every request.")
@click.option("--debug-job-delay", default=0.0, type=float, hidden=True)
def image(
    mode: str,
    model: str,
    gpus: str | None,
    device: str,
    dtype: str,
    host: str,
    port: int,
    queue_size: int,
    max_side: int,
    max_steps: int,
    max_input_pixels: int,
    max_body_mb: int,
    edit_max_pixels: int | None,
    threads: int | None,
    cpu_offload: bool,
    shutdown_grace: float,
    max_restarts: int,
    ready_timeout: float,
    log_level: str,
    no_access_log: bool,
    debug_job_delay: float,
) -> None:
    """Serve Qwen-Image (--mode generation) or Qwen-Image-Edit (--mode edit) over HTTP.

    \b
    Examples:
      llmi serve image --mode generation --model Qwen/Qwen-Image --gpus 0,1,2
      llmi serve image --mode edit --model Qwen/Qwen-Image-Edit --gpus 3,4,5 --port 8100
      llmi serve image --model tiny --device cpu          # a tiny random pipeline, for a demo
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if gpus is not None:
            logging.getLogger("httpx").setLevel(logging.WARNING)  # the launcher polls /ready
            from ..serve.launcher import Launcher, ServerSpec, parse_gpus

            devices = parse_gpus(gpus)
            specs = [ServerSpec(i, d, port + i, host) for i, d in enumerate(devices)]
            args = [
                "--mode", mode, "--model", model, "--dtype", dtype,
                "--queue-size", str(queue_size), "--max-side", str(max_side),
                "--max-steps", str(max_steps), "--max-input-pixels", str(max_input_pixels),
                "--max-body-mb", str(max_body_mb), "--shutdown-grace", str(shutdown_grace),
                "--log-level", log_level,
            ]  # fmt: skip
            if edit_max_pixels:
                args += ["--edit-max-pixels", str(edit_max_pixels)]
            if threads:
                args += ["--threads", str(threads)]
            if cpu_offload:
                args.append("--cpu-offload")
            if no_access_log:
                args.append("--no-access-log")
            if debug_job_delay:
                args += ["--debug-job-delay", str(debug_job_delay)]
            launcher = Launcher(
                specs,
                args,
                ready_timeout=ready_timeout,
                max_restarts=max_restarts,
                stop_grace=shutdown_grace + 5,
                mode=mode,
            )
            sys.exit(launcher.run())

        from ..serve.app import ServerConfig
        from ..serve.launcher import die_with_launcher
        from ..serve.schemas import Limits
        from ..serve.server import run_server

        die_with_launcher()
        config = ServerConfig(
            model=model,
            mode=mode,
            device=device,
            dtype=dtype,
            queue_size=queue_size,
            limits=Limits(
                max_side=max_side,
                max_steps=max_steps,
                max_input_pixels=max_input_pixels,
                max_body_bytes=max_body_mb * 1024 * 1024,
            ),
            edit_max_pixels=edit_max_pixels,
            threads=threads,
            shutdown_grace=shutdown_grace,
            cpu_offload=cpu_offload,
            debug_job_delay=debug_job_delay,
        )
        try:
            code = run_server(
                config, host=host, port=port, log_level=log_level, access_log=not no_access_log
            )
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it drained on
            code = 130
        sys.exit(code)
    except LlmiError as exc:
        raise click.ClickException(str(exc)) from exc
