"""Fixtures for the writer tests (defined in writer_fixtures.py)."""

from writer_fixtures import llama_server, scripted, smollm2_path  # noqa: F401
