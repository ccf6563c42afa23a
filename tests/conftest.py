"""Test-wide settings: offline, headless, and no credentials leaking in from the shell."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for _name in ("SERP_API_KEY", "ARK_API_KEY", "OPENAI_API_KEY", "QWEN_IMAGE_SERVER_URL", "QWEN_EDIT_SERVER_URL",
              "LLMI_ONLINE", "LLMI_IMAGES_BASE_URL", "LLMI_IMAGES_API_KEY", "LLMI_LIBRARY_HOME",
              "LLMI_SEARCH_BACKEND", "LLMI_DIFFUSION_BACKEND", "LLMI_EDIT_BACKEND", "DIFFUSION_BACKBONE",
              "EDIT_BACKBONE"):
    os.environ.pop(_name, None)
# Tests never see the user's image library or caches: each run gets an empty llmi home.
os.environ["LLMI_HOME"] = tempfile.mkdtemp(prefix="llmi-test-home-")
atexit.register(shutil.rmtree, os.environ["LLMI_HOME"], ignore_errors=True)
