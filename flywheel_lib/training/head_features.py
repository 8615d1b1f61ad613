"""The decision head's features: TF-IDF word and character n-grams saved as plain arrays (:class:`_NGrams`), and
the fine-tuned all-MiniLM-L6-v2 encoder with its linear layer (:class:`_TunedEncoder`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..embeddings import DIM, mean_pool, model_folder

_SCALE = 20.0
"""The fine-tuned head's logits: this times (normalised embedding . weight row + bias), a cosine-softmax
classifier; the saved ``coef`` / ``intercept`` carry the factor, so scoring is the same affine map as the
logistic-regression heads'."""



class _NGrams:
    """TF-IDF word (1-2) and character (3-5, within word boundaries) n-grams, L2-normalised each and scaled by
    1/sqrt(2), so the two blocks together weigh as much as the unit-length sentence embedding. Fitted from texts
    or rebuilt from saved vocabularies and IDF weights (no pickle)."""

    SPECS = {"word": dict(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1),
             "char": dict(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)}

    def __init__(self, vectorizers: dict):
        self.vectorizers = vectorizers

    @classmethod
    def fit(cls, texts: list[str]) -> _NGrams:
        from sklearn.feature_extraction.text import TfidfVectorizer

        out = {}
        for name, spec in cls.SPECS.items():
            try:
                out[name] = TfidfVectorizer(**spec).fit(texts)
            except ValueError:  # e.g. too few rows for the char block's min_df: fall back to every n-gram
                out[name] = TfidfVectorizer(**{**spec, "min_df": 1}).fit(texts)
        return cls(out)

    @property
    def n_features(self) -> int:
        return sum(len(v.vocabulary_) for v in self.vectorizers.values())

    def transform(self, texts: list[str]):
        import scipy.sparse as sp

        return sp.hstack([v.transform(texts) for v in self.vectorizers.values()]).tocsr() / np.sqrt(2.0)

    def arrays(self) -> dict:
        out = {}
        for name, v in self.vectorizers.items():
            vocab = sorted(v.vocabulary_, key=v.vocabulary_.get)
            out[f"{name}_vocab"], out[f"{name}_idf"] = np.array(vocab, dtype=str), v.idf_.astype(np.float64)
        return out

    @classmethod
    def from_arrays(cls, z) -> _NGrams:
        from sklearn.feature_extraction.text import TfidfVectorizer

        out = {}
        for name, spec in cls.SPECS.items():
            vocab = [str(t) for t in z[f"{name}_vocab"]]
            v = TfidfVectorizer(**{**spec, "min_df": 1}, vocabulary={t: i for i, t in enumerate(vocab)})
            v.idf_ = np.asarray(z[f"{name}_idf"], dtype=np.float64)
            out[name] = v
        return cls(out)


class _TunedEncoder:
    """all-MiniLM-L6-v2 fine-tuned as the head's classifier: mean-pooled, L2-normalised token states (the sentence
    embedding's own recipe) into a linear layer, trained end to end with cross-entropy. A private copy of the
    bundled weights: the shared sentence encoder (:func:`flywheel_lib.embeddings.load_encoder`) and its cache are
    never touched, so the judges' and retrieval's embeddings stay the base model's."""

    MAX_LEN = 48
    """Longest request in tokens (requests are short: a longer one is truncated)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def base(cls) -> _TunedEncoder:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers import AutoModel, AutoTokenizer

        path = model_folder()
        return cls(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path))

    def embed(self, texts: list[str]):
        """Normalised sentence embeddings as a torch tensor (with gradients when the model is training)."""
        b = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.MAX_LEN, return_tensors="pt")
        return mean_pool(self.model(**b).last_hidden_state, b["attention_mask"])

    def transform(self, texts: list[str], batch: int = 128) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.no_grad():
            return np.concatenate([self.embed(texts[i:i + batch]).numpy() for i in range(0, len(texts), batch)])

    def fit(self, texts: list[str], y: np.ndarray, n_classes: int, *, epochs: float, lr: float, seed: int,
            sample_weight=None, batch: int = 32, desc: str = "fine-tune the decision head's encoder"
            ) -> tuple[np.ndarray, np.ndarray, list[float]]:
        """Fine-tune on ``texts`` -> class index ``y`` for ``epochs`` passes (AdamW at ``lr`` for the encoder,
        1e-2 for the linear layer; 10 warm-up steps, then linear decay to 0). Returns the linear layer's weights and
        bias (times :data:`_SCALE`) and the loss of every step. The weights are rounded to float16 at the end, the
        precision they are saved in, so the fitted head scores exactly as the loaded one does."""
        import torch

        from ..progress import progress_bar

        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        lin = torch.nn.Linear(DIM, n_classes)
        w = torch.ones(len(texts)) if sample_weight is None else torch.as_tensor(np.asarray(sample_weight, float))
        steps = max(1, int(round(epochs * len(texts) / batch)))
        from .datasets import stable_order

        passes = int(np.ceil(steps * batch / len(texts)))  # the first in a stable order of the texts (as the adapter's)
        order = np.concatenate([stable_order(texts, seed=seed, salt="batches")]
                               + [rng.permutation(len(texts)) for _ in range(passes - 1)])
        opt = torch.optim.AdamW([{"params": self.model.parameters(), "lr": lr}, {"params": lin.parameters(), "lr": 1e-2}])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / steps))
        yt, losses = torch.as_tensor(y, dtype=torch.long), []
        self.model.train()
        bar = progress_bar(total=steps, desc=desc, leave=False)
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            logits = lin(self.embed([texts[i] for i in idx])) * _SCALE
            per_row = torch.nn.functional.cross_entropy(logits, yt[idx], reduction="none")
            loss = (per_row * w[idx]).sum() / w[idx].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(round(float(loss.detach()), 4))
            bar.update(1)
            bar.set_postfix(loss=losses[-1])
        bar.close()
        self.model.eval()
        with torch.no_grad():
            for p in self.model.parameters():
                p.copy_(p.half().float())
        return ((lin.weight.detach() * _SCALE).numpy().astype(np.float32),
                (lin.bias.detach() * _SCALE).numpy().astype(np.float32), losses)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.detach().half().contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> _TunedEncoder:
        from safetensors.torch import load_file

        enc = cls.base()
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        missing, unexpected = enc.model.load_state_dict(state, strict=False)
        if [k for k in missing if "position_ids" not in k] or unexpected:
            raise ValueError(f"{path}: not all-MiniLM-L6-v2 weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
        enc.model.eval()
        return enc
