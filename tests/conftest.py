"""Test-wide settings: offline, headless, and no credentials leaking in from the shell."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for _name in ("SERP_API_KEY", "ARK_API_KEY", "OPENAI_API_KEY", "QWEN_IMAGE_SERVER_URL", "QWEN_EDIT_SERVER_URL",
              "LLMI_ONLINE", "LLMI_IMAGES_BASE_URL"):
    os.environ.pop(_name, None)
