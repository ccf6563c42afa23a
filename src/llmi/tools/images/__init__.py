"""The ``diffusion`` and ``edit`` tools on generative image models: one module per provider
(``qwen``: llmi's own image servers; ``ark``: Seedream and SeedEdit; ``openai``: any
OpenAI-compatible images API), each holding its generation and edit backends; ``_hosted`` is the
HTTP side the hosted providers share and ``routing`` picks a backend from the environment. See
``docs/image-backends.md``."""
