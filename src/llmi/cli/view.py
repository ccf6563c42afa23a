"""``llmi view``: browse the documents, evaluation runs and training runs in a folder."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, envvar="LLMI_VIEW_HOST",
              help="Address to listen on. Anything but a loopback address shares the folder with the network "
                   "[env LLMI_VIEW_HOST].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, envvar="LLMI_VIEW_PORT",
              help="Port (default 8765, or the next free one; 0: any free port) [env LLMI_VIEW_PORT].")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Another host name the browser may use for this server (repeatable), e.g. an SSH tunnel's.")
@click.option("--open", "open_browser", is_flag=True, help="Open the address in the default browser.")
def view(folder: Path | None, host: str, port: int | None, allow_hosts: tuple[str, ...], open_browser: bool) -> None:
    """Show what llmi made in FOLDER in a web page (default: ./out if it exists, else .).

    Lists documents (llmi generate, llmi render), evaluation runs (llmi eval) and training runs
    (llmi train grpo), newest first; opens a document with a side panel per image, an
    evaluation run with its plots and a table that filters and sorts, and compares two runs item
    by item. Read-only; pages run no script.

    \b
    Examples:
      llmi view
      llmi view out/eval-rubric-20261201-120000
      llmi view runs/ --port 9000 --open
    """
    from ..errors import LlmiError
    from ..view import urls
    from ..view.server import DEFAULT_PORT, ViewServer, is_loopback

    root = folder if folder is not None else (Path("out") if Path("out").is_dir() else Path("."))
    start = None
    if root.is_file() and root.name == "document.json":
        root, start = root.parent, ""
    try:
        server = ViewServer(root, host=host, port=DEFAULT_PORT if port is None else port,
                            tries=20 if port is None else 1, allow_hosts=allow_hosts)
    except LlmiError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    index = server.app.state.index
    found = index.found()
    kind = index.kind_of("")
    if start is None and kind is not None:
        start = ""
    address = server.url.rstrip("/")
    if start is not None and kind == "eval":
        address += urls.eval_run(start)
    elif start is not None and kind == "training":
        address += urls.training(start)
    elif start is not None:
        address += urls.doc(start)
    else:
        address += "/"

    def ready() -> None:
        names = {"document": "document", "eval": "evaluation", "training": "training run"}
        counts = {name: sum(1 for f in found if f.kind == k) for k, name in names.items()}
        what = ", ".join(f"{n} {name}{'s' if n != 1 else ''}" for name, n in counts.items() if n) or "nothing yet"
        click.echo(f"llmi view: {server.root.resolve()} ({what})")
        if not is_loopback(host):
            click.echo(f"warning: listening on {host}: anyone who can reach this machine can read every file shown "
                       "here", err=True)
        click.echo(f"  {address}\n(Ctrl-C to stop)")
        if open_browser:
            import webbrowser

            webbrowser.open(address)

    try:
        server.serve(on_ready=ready)
    except KeyboardInterrupt:
        pass
