"""The skill model's decision head: refuse (and with which category) or write a query, read from sentence embeddings.

A 135M decoder fine-tuned for a few CPU-minutes learns *what* to write much sooner than *when* not to; the decision
generalises across phrasings from a sentence encoder far better than from the small decoder (the method note *The
decision head*, docs/method/decision-head.md, has the measurements). So a skill model may carry a head beside
its adapter (``04_finetune: decision_head``), fitted on the variant's own training rows (text -> label), so each
variant's head learns from that variant's data and nothing else: every refusal row of the variant's training split
with solvable rows drawn to the same refusal share (``head_rows: all``; ``train`` restricts it to the adapter's
rows). Production-only's head has one class and never refuses. At generation time
(:class:`~flywheel_lib.evaluation.generate.VariantGenerator`) the head decides; the fine-tuned decoder writes the
query (under the query-only grammar when decoding is constrained) or the refusal's sentence after a forced
``REFUSE <category>:``.

Three heads (``decision_head``): ``minilm`` reads the sentence embedding alone; ``hybrid`` reads it beside TF-IDF
word (1-2) and character (3-5) n-grams of the request (the embedding carries the meaning across phrasings, the
n-grams the exact words that separate a field the store has from one it lacks); ``finetuned`` trains the encoder
itself: all-MiniLM-L6-v2 with a linear layer on its normalised mean-pooled embedding, one pass over the head's rows
(AdamW). ``head_members: k`` fine-tunes k encoders with consecutive random seeds and averages their class
probabilities. The features live in :mod:`flywheel_lib.training.head_features`; fitting every variant's head and
choosing a threshold in :mod:`flywheel_lib.training.head_fit`.

The logistic-regression heads are saved as plain arrays (``decision_head.npz`` in the adapter folder: weights,
n-gram vocabularies and their IDF; no pickle); the fine-tuned head's npz holds its linear layer and
``decision_head_encoder.safetensors`` its encoder (float16; further members' are
``decision_head_encoder_1.safetensors``, ``_2`` ...), so a reader of the run folder loads it without the training
code::

    head = DecisionHead(C=8.0, encoder="hybrid").fit(ds.train["text"], ds.train["label"], solvable_id="solvable")
    head.save("runs/r1/artifacts/models/curated")
    DecisionHead.load("runs/r1/artifacts/models/curated").predict(["customers who are doctors"])
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..embeddings import DIM
from .head_features import _NGrams, _TunedEncoder

__all__ = ["DecisionHead", "LinearHead", "TunedHead", "ENCODER_FILE", "HEAD_FILE", "HEADS", "HEAD_ROWS", "THRESHOLD_GRID", "calibrate_threshold",
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

HEAD_ROWS = ("all", "train")
"""``head_rows`` choices of ``04_finetune``: every refusal row of the variant's training split at the adapter's
refusal share (``all``), or exactly the adapter's own training rows (``train``)."""


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
    """The decision head's interface: ``fit(texts, labels) -> self``, :meth:`predict_proba`, :meth:`decide`,
    :meth:`predict`, :meth:`save` / :meth:`load` and :meth:`summary`; fitted attributes end in ``_``.

    Two models implement it: :class:`LinearHead` (logistic regression on sentence embeddings, ``encoder="minilm"``,
    or on embeddings beside TF-IDF n-grams, ``"hybrid"``) and :class:`TunedHead` (``"finetuned"``: the sentence
    encoder itself fine-tuned as the classifier, ``members`` of them averaged). ``DecisionHead(encoder=...)`` makes
    the one ``encoder`` names, and :meth:`load` the one a saved head was.

    ``refusal_threshold``: refuse only when the probability of the request being anything but solvable is at least
    this (0.5: the most likely class wins, refusals included).
    """

    kind: str = ""

    def __new__(cls, *args, encoder: str = "minilm", **kwargs):
        if cls is DecisionHead:
            encoder = args[2] if len(args) > 2 else encoder
            if encoder not in ENCODERS:
                raise ValueError(f"DecisionHead: encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
            cls = TunedHead if encoder == "finetuned" else LinearHead
        return super().__new__(cls)

    def __init__(self, C: float = 8.0, refusal_threshold: float = 0.5, encoder: str = "minilm", *,
                 epochs: float = 1.0, lr: float = 1e-4, seed: int = 7, members: int = 1):
        if not 0.0 < refusal_threshold < 1.0:
            raise ValueError(f"DecisionHead: refusal_threshold must be in (0, 1), got {refusal_threshold}")
        if int(members) != members or members < 1:
            raise ValueError(f"DecisionHead: members must be a whole number >= 1, got {members}")
        self.encoder = encoder
        self.C, self.refusal_threshold = float(C), float(refusal_threshold)
        self.epochs, self.lr, self.seed, self.members = float(epochs), float(lr), int(seed), int(members)
        self.classes_: list[str] = []
        """The labels the head can answer, in the order of its weight rows."""
        self.solvable_id_: str = "solvable"
        """The label that means: write a query."""
        self.coef_: np.ndarray | None = None
        """Weights, one row per class (``len(classes_) x (DIM + n-grams)``: 384 embedding dimensions first)."""
        self.intercept_: np.ndarray | None = None
        """Intercepts, one per class."""
        self.n_fit_: int = 0
        """Rows it was fitted on."""
        self.losses_: list[float] = []
        """A model fitted in steps: the training loss of every step, averaged over its members (empty for a
        logistic regression, and after :meth:`load`)."""

    # --- what each model supplies ----------------------------------------------------------------------------
    def _fit(self, texts: list[str], labels: list[str], classes: list[str], sample_weight) -> None:
        raise NotImplementedError

    def _features(self, texts: list[str]):
        raise NotImplementedError

    def _extra_arrays(self, folder: Path) -> dict:
        """Arrays saved beside the weights (and files written into ``folder`` first)."""
        return {}

    def _load_extra(self, z, folder: Path, path: Path) -> None:
        """Reads back what :meth:`_extra_arrays` saved."""

    def _n_features(self) -> int:
        return DIM

    def _saved_members(self) -> int:
        return 1

    def _summary_extra(self) -> dict:
        return {}

    # --- the interface ---------------------------------------------------------------------------------------
    def fit(self, texts, labels, *, solvable_id: str = "solvable", sample_weight=None) -> DecisionHead:
        """Fit on ``texts`` -> ``labels``; ``sample_weight`` (one per row, optional) weighs the rows' losses."""
        texts, labels = [str(t) for t in texts], [str(y) for y in labels]
        if len(texts) != len(labels) or not texts:
            raise ValueError(f"DecisionHead.fit: {len(texts)} texts and {len(labels)} labels (need the same, > 0)")
        if sample_weight is not None and len(sample_weight) != len(texts):
            raise ValueError(f"DecisionHead.fit: {len(sample_weight)} sample weights for {len(texts)} texts")
        self.solvable_id_, self.n_fit_ = solvable_id, len(texts)
        classes = sorted(set(labels))
        if len(classes) == 1:  # e.g. production-only: every row a logged success; the head never refuses
            self.classes_ = classes
            self.coef_ = np.zeros((1, DIM), dtype=np.float32)
            self.intercept_ = np.zeros(1, dtype=np.float32)
            return self
        self._fit(texts, labels, classes, sample_weight)
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self.coef_ is None or self.intercept_ is None:
            raise RuntimeError("DecisionHead: not fitted (call fit or load)")
        return self.coef_, self.intercept_

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
        coef, icpt = self._check()
        return [_softmax(np.asarray(self._features([str(t) for t in texts]) @ coef.T) + icpt)]

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
        """Write ``decision_head.npz`` into ``folder`` (atomically: a temporary file, then a rename), after what the
        model keeps beside it (a fine-tuned head's encoders)."""
        coef, icpt = self._check()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        extra = self._extra_arrays(folder)
        meta = {"C": self.C, "refusal_threshold": self.refusal_threshold, "encoder": self.encoder,
                "solvable_id": self.solvable_id_, "n_fit": self.n_fit_, "epochs": self.epochs, "lr": self.lr,
                "seed": self.seed, "members": self._saved_members()}
        tmp = folder / (HEAD_FILE + ".tmp.npz")
        np.savez(tmp, coef=coef, intercept=icpt, classes=np.array(self.classes_, dtype=str),
                 meta=np.array(json.dumps(meta)), **extra)
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
        """The head saved in ``folder``, as the model it was saved from."""
        path = Path(folder) / HEAD_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                head = DecisionHead(C=meta["C"], refusal_threshold=meta["refusal_threshold"], encoder=meta["encoder"],
                                    **{k: meta[k] for k in ("epochs", "lr", "seed", "members") if k in meta})
                head.coef_, head.intercept_ = z["coef"], z["intercept"]
                head.classes_ = [str(c) for c in z["classes"]]
                head.solvable_id_, head.n_fit_ = meta["solvable_id"], int(meta.get("n_fit", 0))
                head._load_extra(z, Path(folder), path)
        except (OSError, KeyError, ValueError) as e:
            if isinstance(e, ValueError) and str(e).startswith(str(path)):
                raise
            raise ValueError(f"{path}: not a readable decision head ({e})") from e
        if head.coef_.shape[0] != len(head.classes_):
            raise ValueError(f"{path}: {head.coef_.shape[0]} weight rows for {len(head.classes_)} classes")
        if len(head.classes_) > 1 and head.coef_.shape[1] != head._n_features():
            raise ValueError(f"{path}: {head.coef_.shape[1]} weight columns, the encoder gives {head._n_features()}")
        return head

    def summary(self) -> dict:
        return {"classes": list(self.classes_), "C": self.C, "refusal_threshold": self.refusal_threshold,
                "encoder": self.encoder, "n_fit": self.n_fit_, **self._summary_extra()}


class LinearHead(DecisionHead):
    """Logistic regression (inverse regularisation ``C``) on sentence embeddings (``encoder="minilm"``) or on
    embeddings beside TF-IDF word and character n-grams (``"hybrid"``): deterministic, so one member."""

    kind = "linear"

    def __init__(self, C: float = 8.0, refusal_threshold: float = 0.5, encoder: str = "minilm", **kwargs):
        if encoder not in ("minilm", "hybrid"):
            raise ValueError(f"LinearHead: encoder must be 'minilm' or 'hybrid', got {encoder!r}")
        if kwargs.get("members", 1) > 1:
            raise ValueError(f"DecisionHead: members > 1 averages fine-tuned encoders (SGD draws); the {encoder!r} head "
                             "is a deterministic logistic regression: use encoder 'finetuned' or members 1")
        super().__init__(C, refusal_threshold, encoder, **kwargs)
        self.ngrams_: _NGrams | None = None
        """``hybrid``: the fitted n-gram vocabularies."""

    def _fit(self, texts, labels, classes, sample_weight) -> None:
        from sklearn.linear_model import LogisticRegression

        self.ngrams_ = _NGrams.fit(texts) if self.encoder == "hybrid" else None
        lr = LogisticRegression(C=self.C, max_iter=3000).fit(self._features(texts), labels, sample_weight=sample_weight)
        self.classes_ = [str(c) for c in lr.classes_]
        coef, icpt = lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32)
        if len(self.classes_) == 2:  # binary: P(class 1) = sigmoid(w.x + b) == softmax over rows [0, w]
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt]).astype(np.float32)
        self.coef_, self.intercept_ = coef, icpt

    def _features(self, texts):
        X = _embed(texts)
        if self.ngrams_ is None:
            return X
        import scipy.sparse as sp

        return sp.hstack([sp.csr_matrix(X), self.ngrams_.transform(texts)]).tocsr()

    def _extra_arrays(self, folder: Path) -> dict:
        return self.ngrams_.arrays() if self.ngrams_ is not None else {}

    def _load_extra(self, z, folder: Path, path: Path) -> None:
        self.ngrams_ = _NGrams.from_arrays(z) if "word_vocab" in z.files else None

    def _n_features(self) -> int:
        return DIM + (self.ngrams_.n_features if self.ngrams_ is not None else 0)

    def _summary_extra(self) -> dict:
        return {"n_ngrams": self.ngrams_.n_features if self.ngrams_ is not None else 0}


class TunedHead(DecisionHead):
    """all-MiniLM-L6-v2 fine-tuned as the classifier (a linear layer on its normalised mean-pooled embedding;
    ``epochs`` passes, peak learning rate ``lr``, ``seed`` for the layer's initialisation and the batch order; ``C``
    plays no part). ``members``: that many encoders with seeds ``seed``, ``seed + 1``, ..., their class
    probabilities averaged: one fit is one draw of SGD noise, and the benchmark ``bench_validation_draw.py`` measures
    what averaging buys."""

    kind = "finetuned"

    def __init__(self, C: float = 8.0, refusal_threshold: float = 0.5, encoder: str = "finetuned", *,
                 epochs: float = 1.0, lr: float = 1e-4, **kwargs):
        if not (epochs > 0 and lr > 0):
            raise ValueError(f"DecisionHead: a fine-tuned head needs epochs > 0 and lr > 0, got {epochs} and {lr}")
        super().__init__(C, refusal_threshold, encoder, epochs=epochs, lr=lr, **kwargs)
        self.tuned_: _TunedEncoder | None = None
        """The first member's fine-tuned encoder."""
        self.extra_: list[tuple[_TunedEncoder, np.ndarray, np.ndarray]] = []
        """The members after the first, each its encoder, weights and intercepts."""

    def _fit(self, texts, labels, classes, sample_weight) -> None:
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

    def _features(self, texts):
        if self.tuned_ is None:
            raise RuntimeError("DecisionHead: the fine-tuned head has no encoder (call fit or load)")
        return self.tuned_.transform(texts)

    def member_proba(self, texts) -> list[np.ndarray]:
        texts = [str(t) for t in texts]
        out = super().member_proba(texts)
        for enc, coef, icpt in self.extra_:
            out.append(_softmax(np.asarray(enc.transform(texts) @ coef.T) + icpt))
        return out

    def _extra_arrays(self, folder: Path) -> dict:
        if self.tuned_ is not None:
            self.tuned_.save(folder / ENCODER_FILE)
        extra = {}
        for k, (enc, coef, icpt) in enumerate(self.extra_, start=1):
            enc.save(folder / encoder_file(k))
            extra[f"coef_{k}"], extra[f"intercept_{k}"] = coef, icpt
        return extra

    def _load_extra(self, z, folder: Path, path: Path) -> None:
        extra = [(z[f"coef_{k}"], z[f"intercept_{k}"]) for k in range(1, self.members)]
        if len(self.classes_) <= 1:
            return
        if not (folder / ENCODER_FILE).is_file():
            raise ValueError(f"{path}: a fine-tuned head, but its encoder {folder / ENCODER_FILE} is missing")
        self.tuned_ = _TunedEncoder.load(folder / ENCODER_FILE)
        for k, (coef, icpt) in enumerate(extra, start=1):
            enc_path = folder / encoder_file(k)
            if not enc_path.is_file():
                raise ValueError(f"{path}: a fine-tuned head of {self.members} members, but member {k + 1}'s "
                                 f"encoder {enc_path} is missing")
            if coef.shape != self.coef_.shape:
                raise ValueError(f"{path}: member {k + 1}'s weights are {coef.shape}, the first's {self.coef_.shape}")
            self.extra_.append((_TunedEncoder.load(enc_path), coef, icpt))

    def _saved_members(self) -> int:
        return 1 + len(self.extra_)

    def _summary_extra(self) -> dict:
        return {"epochs": self.epochs, "lr": self.lr, "members": self.members, "n_ngrams": 0}


from .head_fit import THRESHOLD_GRID, calibrate_threshold, fit_heads  # noqa: E402 - they use DecisionHead
