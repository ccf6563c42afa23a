"""The ``code`` tool: chart code from a model, run in a pool of sandboxed worker processes.

``tool`` (the backend the engine calls) → ``pool`` (warm workers, one job each at a time) →
``launch`` (which isolation layers this host has, and the worker's command line) → ``worker``
and ``render`` (the standalone scripts that run inside the sandbox and never import llmi).
See ``docs/sandbox.md``.
"""

from .tool import CodeSandboxTool

__all__ = ["CodeSandboxTool"]
