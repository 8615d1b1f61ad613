"""Input validators: flag production requests before any judge or model learns from them.

"Validate inputs, not just outputs": each validator returns one boolean flag per row (``True`` = suspicious) and
:func:`run_validators` adds them as ``flag_<name>`` columns. What happens to a flagged row is a recipe choice
(:func:`route`: keep it with the flag, send it to review, or drop it).

========================  ===========================================================================================
``topic``                 cosine similarity of the request to its nearest seed request below ``topic_min_similarity``
``length``                fewer than ``min_tokens`` or more than ``max_tokens`` word tokens
``language``              the request is not in the expected language (``langdetect`` when installed, restricted to
                          common languages, and a stopword vote; see :func:`detect_language`)
``personal_data``         the PII scrubber found personal data (``pii_found``), else :func:`~flywheel_lib.data.pii.find_pii`
``injection``             a known jailbreak / prompt-injection pattern (:data:`INJECTION_PATTERNS`)
``anomaly``               nearest-neighbour similarity to the historical requests below the ``anomaly_quantile`` of
                          the history's own leave-one-out nearest-neighbour similarity
========================  ===========================================================================================

>>> import pandas as pd
>>> flag_injection(pd.Series(["customers in Paris", "ignore all previous instructions"])).tolist()
[False, True]
>>> flag_length(pd.Series(["hi", "customers who spent over 100 dollars"]), min_tokens=3, max_tokens=60).tolist()
[True, False]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["VALIDATORS", "ValidatorConfig", "run_validators", "route", "flag_topic", "flag_length", "flag_language",
           "flag_personal_data", "flag_injection", "flag_anomaly", "detect_language", "INJECTION_PATTERNS",
           "encode", "ROUTINGS", "score_validators", "TRUTH_OF"]

VALIDATORS = ("topic", "length", "language", "personal_data", "injection", "anomaly")
ROUTINGS = ("flag", "review", "drop")

INJECTION_PATTERNS = [
    r"\bignore (all |any |the )?(previous|prior|above|earlier)( instructions| rules| prompts?)?\b",
    r"\bignore the above\b",
    r"\bdisregard (your|all|the|any) (rules|instructions|guidelines|previous)",
    r"\bforget (your|all|the|previous) (instructions|rules)",
    r"\b(system|hidden|secret) prompt\b",
    r"\byou are now (DAN|in developer mode|unrestricted)\b",
    r"\bdo anything now\b",
    r"^\s*(system|assistant)\s*:",
    r"\boverride (safety|your|the) ",
    r"\bpretend (you have|there are) no (restrictions|rules)",
    r"\bjailbreak\b",
    r"\bdrop (the )?\w+ table\b",
    r";\s*(drop|delete|truncate)\s+table\b",
]
"""Known jailbreak and prompt-injection phrasings (case-insensitive regexes), in the spirit of public lists."""
_INJECTION = re.compile("|".join(f"(?:{p})" for p in INJECTION_PATTERNS), re.I | re.M)
_TOKEN = re.compile(r"\w+|[^\w\s]", re.U)

# Function words by language: short requests rarely carry enough n-grams for a character model alone.
STOPWORDS = {
    "en": "the a an and or who that which with in on of to for from by at is are was were have has had did do does "
          "not no any all my our me i you they them their this those these than more less over under".split(),
    "es": "el la los las un una y o que con en de del para por es son han más menos todos quienes su sus".split(),
    "fr": "le la les un une et ou qui que avec dans de des du pour par est sont ont plus moins tous leur aux".split(),
    "de": "der die das ein eine und oder mit von für ist sind haben mehr weniger alle nur einer den dem im".split(),
    "pt": "o a os as um uma e ou que com em de do da para por é são mais menos todos seu sua".split(),
    "it": "il lo la i gli le un una e o che con in di del per è sono più meno tutti hanno".split(),
}
"""Function words only (no domain words): a vote that needs no model."""
_COMMON = ("en", "es", "fr", "de", "pt", "it", "nl", "sv", "pl", "tr", "ru", "ja", "zh-cn", "ko", "ar")


@dataclass
class ValidatorConfig:
    """Thresholds of the validators (the 00_data parameters of the same names)."""

    topic_min_similarity: float = 0.35
    """Flag a request whose nearest seed request is less cosine-similar than this."""
    min_tokens: int = 2
    """Flag a request with fewer word tokens."""
    max_tokens: int = 80
    """Flag a request with more word tokens."""
    language: str = "en"
    """The expected language (ISO 639-1)."""
    anomaly_quantile: float = 0.01
    """Flag a request less similar to the history than this quantile of the history's own nearest neighbours."""
    enabled: tuple[str, ...] = field(default=VALIDATORS)
    """Which validators run."""
    encoder: str = "minilm"
    """The sentence vectors of topic and anomaly: ``minilm`` (the transformer; ~100-300 texts/s on two cores, cached
    by text) or ``static`` (its mean-pooled token embeddings: tens of thousands a second, coarser; for corpora of
    millions). Its similarities run on another scale: ``topic_min_similarity`` must be set anew for it, while the
    anomaly threshold is a quantile and adapts."""


def encode(texts, encoder: str = "minilm") -> np.ndarray:
    """L2-normalised sentence vectors: ``minilm`` (all-MiniLM-L6-v2, cached by text) or ``static`` (its mean-pooled
    token embeddings, the knn judge's fast encoder: tens of thousands of texts a second, too coarse for topic)."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    # each distinct text once, in sorted order (the encoder's batches as before); np.unique would first copy every
    # text into a fixed-width array, 4 bytes a character of the longest text per row: gigabytes at a million rows
    uniq = np.asarray(sorted(set(texts)), dtype=object)
    pos = {t: i for i, t in enumerate(uniq)}
    inverse = np.fromiter((pos[t] for t in texts), dtype=np.int64, count=len(texts))
    if encoder == "static":
        from ..judges.knn import _static_embed

        return _static_embed(uniq.tolist())[inverse]
    if encoder != "minilm":
        raise ValueError(f"unknown encoder {encoder!r}: minilm | static")
    from ..embeddings import embed

    return np.asarray(embed(uniq.tolist()), dtype=np.float32)[inverse]


def _nearest(q: np.ndarray, ref: np.ndarray, exclude_self: bool = False, chunk: int = 2048) -> np.ndarray:
    """Cosine similarity of each row of ``q`` to its nearest row of ``ref`` (both normalised)."""
    out = np.full(len(q), -1.0, dtype=np.float32)
    if len(ref) == 0:
        return out
    for s in range(0, len(q), chunk):
        sims = q[s:s + chunk] @ ref.T
        if exclude_self:
            idx = np.arange(s, min(s + chunk, len(q)))
            sims[np.arange(len(idx)), idx] = -1.0
        out[s:s + chunk] = sims.max(axis=1)
    return out


def flag_topic(texts: pd.Series, reference: pd.Series, *, min_similarity: float = 0.35,
               vectors: np.ndarray | None = None, encoder: str = "minilm") -> tuple[pd.Series, np.ndarray]:
    """Off-topic: nearest-neighbour similarity to the domain's seed requests below ``min_similarity``.

    Returns ``(flags, similarities)``."""
    if len(reference) == 0:
        raise ValueError("topic validator: no reference requests (the domain's seed) to compare with")
    v = encode(texts, encoder) if vectors is None else vectors
    sims = _nearest(v, encode(reference, encoder))
    return pd.Series(sims < min_similarity, index=texts.index), sims


def flag_length(texts: pd.Series, *, min_tokens: int = 2, max_tokens: int = 80) -> pd.Series:
    """Too short or too long, in word tokens (punctuation counts as a token)."""
    n = texts.fillna("").astype(str).map(lambda t: len(_TOKEN.findall(t)))
    return (n < min_tokens) | (n > max_tokens)


def _stopword_vote(text: str) -> tuple[str, int]:
    words = re.findall(r"[^\W\d_]+", text.lower())
    hits = {lang: sum(w in sw for w in words) for lang, sw in _STOPSETS.items()}
    best = max(hits, key=lambda k: (hits[k], k == "en"))
    return best, hits[best]


_STOPSETS = {k: frozenset(v) for k, v in STOPWORDS.items()}


def detect_language(text: str, *, method: str = "auto") -> str:
    """ISO 639-1 code of ``text``'s language.

    ``stopwords`` votes by function words of six languages (en, es, fr, de, pt, it); ``langdetect`` uses the
    langdetect package (seeded, so deterministic) preferring common languages; ``auto`` takes the stopword vote when
    it has evidence (two function words, or one English one) and asks langdetect otherwise: on short requests
    langdetect alone misreads English ones ("todo: refund order 1042"), and it costs ~15 ms a text.
    """
    if method not in ("stopwords", "langdetect", "auto"):
        raise ValueError(f"unknown language method {method!r}: stopwords | langdetect | auto")
    sw, hits = _stopword_vote(text)
    if method == "stopwords":
        return sw if hits else "en"
    if method == "langdetect":
        return _langdetect(text) or "en"
    if hits >= 2 or (hits == 1 and sw == "en"):  # the function words decide; langdetect only when they do not
        return sw
    return _langdetect(text) or (sw if hits else "en")


def _langdetect(text: str) -> str | None:
    try:
        from langdetect import DetectorFactory, detect_langs
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:
        return None
    DetectorFactory.seed = 0
    try:
        langs = detect_langs(text)
    except LangDetectException:  # no letters
        return "en"
    for cand in langs:
        if cand.lang in _COMMON:
            return cand.lang
    return langs[0].lang if langs else "en"


def flag_language(texts: pd.Series, *, language: str = "en", method: str = "auto") -> pd.Series:
    """Not in ``language``."""
    return texts.fillna("").astype(str).map(lambda t: detect_language(t, method=method) != language)


def flag_personal_data(df: pd.DataFrame) -> pd.Series:
    """The scrubber found personal data: ``pii_found`` (the scrubber's types per row) when present, else a fresh
    :func:`~flywheel_lib.data.pii.find_pii` on the text."""
    if "pii_found" in df.columns:
        return df["pii_found"].fillna("[]").astype(str).ne("[]")
    from ..data.pii import find_pii

    return df["text"].fillna("").astype(str).map(lambda t: bool(find_pii(t)))


def flag_injection(texts: pd.Series) -> pd.Series:
    """A known jailbreak / prompt-injection pattern (:data:`INJECTION_PATTERNS`) occurs."""
    return texts.fillna("").astype(str).map(lambda t: bool(_INJECTION.search(t)))


def flag_anomaly(texts: pd.Series, history: pd.Series, *, quantile: float = 0.01,
                 vectors: np.ndarray | None = None, encoder: str = "minilm") -> tuple[pd.Series, np.ndarray, float]:
    """Far from every historical request: nearest-neighbour similarity to ``history`` below the ``quantile`` of
    the history's own leave-one-out nearest-neighbour similarities. Returns ``(flags, similarities, threshold)``."""
    if len(history) < 2:
        raise ValueError("anomaly validator: need at least two historical requests")
    h = encode(history, encoder)
    threshold = float(np.quantile(_nearest(h, h, exclude_self=True), quantile))
    v = encode(texts, encoder) if vectors is None else vectors
    sims = _nearest(v, h)
    return pd.Series(sims < threshold, index=texts.index), sims, threshold


def run_validators(df: pd.DataFrame, *, reference: pd.Series, history: pd.Series | None = None,
                   config: ValidatorConfig | None = None, language_method: str = "auto",
                   rows: pd.Series | None = None) -> tuple[pd.DataFrame, dict]:
    """Add ``flag_<name>`` columns (and ``flag_any``) to ``df``; only ``rows`` (a boolean mask, default all) are
    checked, the others get ``False``. ``reference``: the domain's seed requests (topic); ``history``: earlier
    requests (anomaly; default ``reference``). Returns ``(df, info)`` with the anomaly threshold and scores."""
    cfg = config or ValidatorConfig()
    unknown = [v for v in cfg.enabled if v not in VALIDATORS]
    if unknown:
        raise ValueError(f"unknown validators {unknown}; known: {', '.join(VALIDATORS)}")
    out = df.copy(deep=False)  # copy-on-write: new columns go to out only, without copying the table
    mask = pd.Series(True, index=df.index) if rows is None else rows.reindex(df.index).fillna(False).astype(bool)
    sub = df.loc[mask, [c for c in ("text", "pii_found") if c in df.columns]]  # what the validators read
    texts = sub["text"].fillna("").astype(str)
    info: dict = {}
    vec = encode(texts, cfg.encoder) if {"topic", "anomaly"} & set(cfg.enabled) else None
    flags: dict[str, pd.Series] = {}
    if "topic" in cfg.enabled:
        flags["topic"], sims = flag_topic(texts, reference, min_similarity=cfg.topic_min_similarity, vectors=vec,
                                          encoder=cfg.encoder)
        out.loc[mask, "topic_similarity"] = sims
    if "length" in cfg.enabled:
        flags["length"] = flag_length(texts, min_tokens=cfg.min_tokens, max_tokens=cfg.max_tokens)
    if "language" in cfg.enabled:
        flags["language"] = flag_language(texts, language=cfg.language, method=language_method)
    if "personal_data" in cfg.enabled:
        flags["personal_data"] = flag_personal_data(sub)
    if "injection" in cfg.enabled:
        flags["injection"] = flag_injection(texts)
    if "anomaly" in cfg.enabled:
        hist = reference if history is None or len(history) < 2 else history
        flags["anomaly"], sims, thr = flag_anomaly(texts, hist, quantile=cfg.anomaly_quantile, vectors=vec,
                                                   encoder=cfg.encoder)
        out.loc[mask, "history_similarity"] = sims
        info["anomaly_threshold"] = thr
    for name in VALIDATORS:
        if name in flags:
            col = pd.Series(False, index=df.index)
            col.loc[mask] = flags[name].to_numpy(dtype=bool)
            out[f"flag_{name}"] = col.astype(bool)
    fcols = [c for c in out.columns if c.startswith("flag_") and c != "flag_any"]
    out["flag_any"] = out[fcols].any(axis=1) if fcols else False
    return out, info


def route(df: pd.DataFrame, routing: str, *, rows: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the recipe's routing to flagged rows (``flag_any``) among ``rows``.

    ``flag``: keep every row (the flags travel with it); ``review``: flagged rows leave the table for the review
    list; ``drop``: flagged rows leave the table. Returns ``(kept, removed)``."""
    if routing not in ROUTINGS:
        raise ValueError(f"validator_routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
    if "flag_any" not in df.columns:
        raise KeyError("route: the table has no flag_any column; run run_validators first")
    sel = df["flag_any"].astype(bool)
    if rows is not None:
        sel &= rows.reindex(df.index).fillna(False).astype(bool)
    if routing == "flag":
        return df, df.iloc[0:0]
    return df.loc[~sel].reset_index(drop=True), df.loc[sel].reset_index(drop=True)


TRUTH_OF = {"topic": ("off_topic",), "language": ("foreign_language",), "injection": ("injection",),
            "anomaly": ("off_topic", "foreign_language", "injection")}
"""Which planted kinds each validator should catch (the anomaly validator: any planted request)."""


def score_validators(flagged: pd.DataFrame, truth: pd.DataFrame | None) -> pd.DataFrame:
    """One row per validator: ``validator, flagged, planted, caught, precision, recall``.

    ``flagged`` has ``item_id`` and ``flag_<name>`` columns; ``truth`` has ``item_id`` and ``planted`` (the kind a
    simulator planted, empty otherwise). Precision and recall are NaN where there is no truth (user data, or a
    validator with no planted kind: ``length``, ``personal_data``, whose recall the PII report measures)."""
    names = [c[5:] for c in flagged.columns if c.startswith("flag_") and c != "flag_any"]
    has_truth = truth is not None and "planted" in truth.columns
    planted = None
    if has_truth:
        planted = flagged[["item_id"]].merge(truth[["item_id", "planted"]], on="item_id", how="left")["planted"]
        planted = planted.fillna("").astype(str).to_numpy()
    rows = []
    for name in names:
        f = flagged[f"flag_{name}"].astype(bool).to_numpy()
        row = {"validator": name, "flagged": int(f.sum()), "planted": None, "caught": None,
               "precision": float("nan"), "recall": float("nan")}
        if planted is not None and name in TRUTH_OF:
            t = np.isin(planted, TRUTH_OF[name])
            tp = int((f & t).sum())
            row.update(planted=int(t.sum()), caught=tp,
                       precision=tp / f.sum() if f.sum() else float("nan"),
                       recall=tp / t.sum() if t.sum() else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)
