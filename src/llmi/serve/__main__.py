"""``python -m llmi.serve image ...`` — the same as ``llmi serve image ...`` (the launcher's children use it)."""

from llmi.cli.serve import serve

if __name__ == "__main__":
    serve(prog_name="python -m llmi.serve")
