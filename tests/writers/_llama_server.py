"""Run llama-cpp-python's OpenAI-compatible server with llama.cpp's extra weight buffers off.

On some virtual machines llama.cpp's AMX kernels die with an illegal instruction (see
``llmi.llm.local.open_llama``); the server offers no switch for that, so this launcher sets
the model-params default before handing over to ``python -m llama_cpp.server``.
"""

import runpy

from llama_cpp import llama_cpp as low

_defaults = low.llama_model_default_params


def _without_extra_buffers():
    params = _defaults()
    params.use_extra_bufts = False
    return params


if __name__ == "__main__":  # only as a program: importing it (e.g. for doctests) does nothing
    low.llama_model_default_params = _without_extra_buffers
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
