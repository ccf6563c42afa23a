"""Tiny random-weight Qwen-Image pipelines, built offline, for tests, benchmarks and demos.

The pipelines are the real diffusers classes (``QwenImagePipeline``, ``QwenImageEditPipeline``)
with every component shrunk: a byte-level BPE tokenizer trained here on the pipelines' own
prompt templates, a 2-layer Qwen2.5-VL text encoder of width 16, a 2-layer transformer and a
small VAE with the real ×8 scale. Nothing is downloaded. The images are noise, but every code
path of the server (tokenising, encoding, denoising, decoding, the edit pipeline's vision
tokens) runs for real, in milliseconds on a CPU.

>>> path = build_tiny_pipeline("/tmp/llmi-tiny-gen", "generation")  # doctest: +SKIP
>>> # then: llmi serve image --mode generation --model /tmp/llmi-tiny-gen --device cpu

``llmi serve image --model tiny`` builds (once, cached) and serves these.
"""

from __future__ import annotations

import ast
import json
import os
import re
import tempfile
from pathlib import Path

__all__ = ["TINY_MODEL_NAME", "build_tiny_pipeline", "tiny_pipeline_path"]

#: the ``--model`` value that means "build and serve a tiny random pipeline"
TINY_MODEL_NAME = "tiny"

# Qwen2's pre-tokenisation regex (the one its tokenizer.json declares).
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_VERSION = "2"  # bump when the layout changes, so cached folders are rebuilt


def _templates() -> list[str]:
    from diffusers import QwenImageEditPipeline, QwenImagePipeline

    out = []
    for cls in (QwenImagePipeline, QwenImageEditPipeline):
        # The templates are set in __init__; read them without building a pipeline.
        src = Path(__import__(cls.__module__, fromlist=["x"]).__file__).read_text()
        start = src.index("self.prompt_template_encode = ") + len("self.prompt_template_encode = ")
        line = src[start : src.index("\n", start)]
        out.append(ast.literal_eval(line))  # a plain string literal in diffusers' own source
    return out


def _build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    corpus = []
    for template in _templates():
        # Train on the pieces between special tokens, as the tokenizer will see them.
        pieces = re.split("|".join(map(re.escape, _SPECIALS)), template.format("a red fox"))
        corpus.extend([p for p in pieces if p] * 50)  # frequent: every template word merges
    corpus += [
        "a beautiful sunset over mountains, make it black and white, a cat on a sofa",
        "0123456789 the quick brown fox jumps over the lazy dog",
    ] * 5
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(vocab=state["vocab"], merges=merges)
    tok.add_special_tokens({"additional_special_tokens": _SPECIALS})
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = _CHAT_TEMPLATE
    return tok


def _image_only_processor_class():
    """``Qwen2VLProcessor`` without its video processor (which needs torchvision)."""
    from transformers import Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        attributes = ["image_processor", "tokenizer"]
        image_processor_class = "AutoImageProcessor"
        tokenizer_class = "AutoTokenizer"

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            kwargs.pop("video_processor", None)
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            from transformers.processing_utils import ProcessorMixin

            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2VLProcessor


def make_image_only_processor(image_processor, tokenizer, chat_template=None):
    """A Qwen2-VL processor that works without torchvision (images only, no video)."""
    return _image_only_processor_class()(image_processor, tokenizer, chat_template=chat_template)


def load_image_only_processor(folder: str | os.PathLike):
    """Load a pipeline's ``processor/`` folder as an image-only Qwen2-VL processor."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    folder = str(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
    return make_image_only_processor(image_processor, tokenizer, tokenizer.chat_template)


def _build_components(mode: str, seed: int) -> dict:
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = _build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    hidden = 16
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2], "rope_theta": 10000.0},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": hidden,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=hidden,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    ).eval()
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ).eval()
    components = {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }
    if mode == "edit":
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )

        # Small vision inputs keep the tiny edit fast (the real model allows up to ~12.8 MP).
        image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
        components["processor"] = make_image_only_processor(
            image_processor, tokenizer, _CHAT_TEMPLATE
        )
    return components


_VIDEO_KEYS = (
    "min_pixels", "max_pixels", "size", "patch_size", "temporal_patch_size", "merge_size",
    "image_mean", "image_std", "do_resize", "do_rescale", "rescale_factor", "do_normalize",
    "do_convert_rgb",
)


def build_tiny_pipeline(path: str | os.PathLike, mode: str = "generation", seed: int = 0) -> Path:
    """Build a tiny random ``QwenImagePipeline`` (``mode="generation"``) or
    ``QwenImageEditPipeline`` (``mode="edit"``) and save it as a diffusers folder at ``path``.

    The folder is a standard diffusers layout (``model_index.json`` names
    ``transformers.Qwen2VLProcessor`` for the edit pipeline's processor, as the real
    Qwen-Image-Edit does), loadable by :func:`llmi.serve.pipelines.load_pipeline`.
    """
    from diffusers import QwenImageEditPipeline, QwenImagePipeline

    if mode not in ("generation", "edit"):
        raise ValueError(f"mode must be 'generation' or 'edit', not {mode!r}")
    path = Path(path)
    components = _build_components(mode, seed)
    cls = QwenImageEditPipeline if mode == "edit" else QwenImagePipeline
    pipe = cls(**components)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(path), safe_serialization=True)
    if mode == "edit":
        # Record the processor under the class the real pipeline uses, so the folder has the
        # same layout as Qwen/Qwen-Image-Edit (the loader handles hosts without torchvision).
        index_file = path / "model_index.json"
        index = json.loads(index_file.read_text())
        index["processor"] = ["transformers", "Qwen2VLProcessor"]
        index_file.write_text(json.dumps(index, indent=2))
        proc_file = path / "processor" / "processor_config.json"
        proc = json.loads(proc_file.read_text())
        proc["processor_class"] = "Qwen2VLProcessor"
        # Where torchvision works, transformers builds the real Qwen2VLProcessor, which also
        # loads a video processor: give it one, mirroring the image processor's settings.
        image_cfg = proc.get("image_processor", {})
        video_cfg = {k: image_cfg[k] for k in _VIDEO_KEYS if k in image_cfg}
        video_cfg["video_processor_type"] = "Qwen2VLVideoProcessor"
        proc["video_processor"] = video_cfg
        proc_file.write_text(json.dumps(proc, indent=2))
        (path / "processor" / "video_preprocessor_config.json").write_text(
            json.dumps({**video_cfg, "processor_class": "Qwen2VLProcessor"}, indent=2)
        )
    (path / "LLMI_TINY").write_text(f"{mode} {seed} v{_VERSION}\n")
    return path


def tiny_pipeline_path(mode: str = "generation", cache_dir: str | os.PathLike | None = None) -> Path:
    """A tiny pipeline folder for ``mode``, built once into a cache directory and reused.

    The cache lives in ``$LLMI_CACHE_DIR`` or the system temporary directory.
    """
    base = Path(cache_dir or os.environ.get("LLMI_CACHE_DIR") or tempfile.gettempdir())
    path = base / f"llmi-tiny-qwen-{mode}-v{_VERSION}"
    if (path / "LLMI_TINY").exists():
        return path
    # Build beside the target and rename, so concurrent builders never see a half folder.
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=base))
    build_tiny_pipeline(tmp, mode)
    try:
        os.rename(tmp, path)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return path
