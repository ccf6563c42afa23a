"""Training: datasets in verl's layout, verl recipes for clusters, GRPO with TRL on one machine.

- ``data`` / ``rows``: ``llmi data prepare`` and ``llmi data inspect`` (every row checked);
- ``recipes`` / ``verl``: LLM-I's three cluster recipes, ``llmi train verl RECIPE --check``;
- ``grpo``: ``llmi train grpo`` on TRL's ``GRPOTrainer``, for one machine;
- ``model``: the packaged SmolLM2 made trainable, and checkpoints turned back into GGUF.

Heavy libraries (torch, transformers, trl, verl) load only inside the functions that use them.
"""
