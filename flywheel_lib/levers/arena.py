"""Arena battles: two models' answers to one request, compared by a pairwise judge in both orders.

A pairwise judge is anything with ``name`` and ``compare(request, first, second) -> "first" | "second" | "tie"``
(:class:`PairwiseJudge`). :func:`judge_battles` shows every pair to each judge twice, once in each order; a verdict
that names the same *position* both times (it flips with the order) counts as a tie and as a position-biased
verdict, so a judge that always prefers the first answer produces ties, not wins. Two judges ship:

- :class:`OfflinePairwiseJudge`: which answer matches the panel's accepted label, runs, and selects what the request
  asks (the known correct query's customers when one is known, else anyone at all), scored on a small ladder;
- :class:`LLMPairwiseJudge`: the prompt :data:`PAIRWISE_PROMPT` sent through any ``complete(prompt) -> text``
  callable (an API judge's client), its answer read by :func:`parse_pairwise`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Protocol

import pandas as pd

from ..training.targets import parse_answer

__all__ = ["PairwiseJudge", "OfflinePairwiseJudge", "LLMPairwiseJudge", "PAIRWISE_PROMPT", "parse_pairwise",
           "judge_battles", "position_bias", "battle_pairs"]

VERDICTS = ("first", "second", "tie")


class PairwiseJudge(Protocol):
    name: str

    def compare(self, request: dict, first: str, second: str) -> str:
        """``"first"``, ``"second"`` or ``"tie"`` for two answers to ``request`` (a dict: ``text``, ``label``, ...)."""


class OfflinePairwiseJudge:
    """Scores each answer against the panel's accepted label (``request["label"]``) and compares the scores.

    Refusal requests: the right category 3, another refusal 1, a query 0. Solvable requests: a query selecting the
    known correct customers (``request["output"]``) 3, a query that runs and selects someone 2, one that runs and
    selects nobody 1, a query that does not run or a refusal 0. Equal scores are a tie.
    """

    name = "offline_pairwise"

    def __init__(self, *, domain, taxonomy):
        self.domain, self.tax = domain, taxonomy
        self.refusable = taxonomy.decline_ids
        self._scores: dict[tuple, int] = {}  # every answer meets several others, in both orders: score it once

    def score(self, request: dict, answer: str) -> int:
        key = (request.get("item_id"), request.get("text"), request["label"], request.get("output"), answer)
        if key not in self._scores:
            self._scores[key] = self._score(request, answer)
        return self._scores[key]

    def _score(self, request: dict, answer: str) -> int:
        a = parse_answer(answer, self.refusable)
        if request["label"] != self.tax.solvable_id:
            return 0 if not a.refused else (3 if a.refusal_category == request["label"] else 1)
        if a.refused or not a.output:
            return 0
        gold = request.get("output")
        try:
            if isinstance(gold, str) and gold.strip() and self.domain.same_result(a.output, gold):
                return 3
            return 2 if len(self.domain.execute(a.output)) > 0 else 1
        except Exception:  # noqa: BLE001 - an answer that does not run
            return 0

    def compare(self, request: dict, first: str, second: str) -> str:
        s1, s2 = self.score(request, first), self.score(request, second)
        return "first" if s1 > s2 else "second" if s2 > s1 else "tie"


PAIRWISE_PROMPT = """You compare two answers of a customer-segment assistant to one merchant request.
A good answer is a segment query that runs and selects exactly the customers the request asks for; when the
request cannot be served, a good answer refuses with the right category ({categories}).
The reviewers' accepted label for this request: {label}.

Request: {request}

Answer 1: {first}

Answer 2: {second}

Which answer is better? Reply with one word: 1, 2 or tie."""
"""The LLM pairwise prompt: placeholders ``categories, label, request, first, second``."""

_VERDICT_RE = re.compile(r"\b(1|2|tie|one|two|first|second)\b", re.IGNORECASE)


def parse_pairwise(text: str | None) -> str:
    """Read an LLM's pairwise answer: the first of 1/2/tie (or one/two/first/second); unreadable is a tie."""
    m = _VERDICT_RE.search(text or "")
    if not m:
        return "tie"
    w = m.group(1).lower()
    return "first" if w in ("1", "one", "first") else "second" if w in ("2", "two", "second") else "tie"


class LLMPairwiseJudge:
    """An API (or local) LLM as a pairwise judge: ``complete(prompt) -> text`` is the model call."""

    def __init__(self, complete: Callable[[str], str], *, taxonomy, name: str = "llm_pairwise"):
        self.complete, self.tax, self.name = complete, taxonomy, name

    def compare(self, request: dict, first: str, second: str) -> str:
        cats = ", ".join(self.tax.decline_ids)
        return parse_pairwise(self.complete(PAIRWISE_PROMPT.format(
            categories=cats, label=request.get("label", "unknown"), request=request["text"], first=first,
            second=second)))


def battle_pairs(models: list[str]) -> list[tuple[str, str]]:
    """Every unordered pair of distinct models once (``a`` before ``b`` in the given order)."""
    return list(itertools.combinations(models, 2))


def judge_battles(requests: pd.DataFrame, answers: dict[str, list[str]], judges: list,
                  models: list[str] | None = None) -> pd.DataFrame:
    """Every pair of models on every request, each judge in both orders.

    ``requests``: ``item_id, text, label`` (the accepted label) and optionally ``output`` (a known correct query);
    ``answers[model][i]`` is that model's answer to row ``i``. One row per (request, pair, judge):
    ``item_id, judge, model_a, model_b, verdict_ab, verdict_ba, winner`` (``model_a``, ``model_b`` or ``"tie"``),
    ``flipped`` (the verdict followed the position, not the answer).
    """
    models = list(models or answers)
    for m in models:
        if len(answers[m]) != len(requests):
            raise ValueError(f"model {m!r} has {len(answers[m])} answers for {len(requests)} requests")
    recs = requests.to_dict("records")
    rows = []
    for judge in judges:
        for i, req in enumerate(recs):
            for a, b in battle_pairs(models):
                x, y = answers[a][i], answers[b][i]
                ab = judge.compare(req, x, y)   # a shown first
                ba = judge.compare(req, y, x)   # b shown first
                if ab not in VERDICTS or ba not in VERDICTS:
                    raise ValueError(f"judge {judge.name!r} returned {ab!r}/{ba!r}; expected one of {VERDICTS}")
                win_ab = {"first": a, "second": b}.get(ab, "tie")
                win_ba = {"first": b, "second": a}.get(ba, "tie")
                flipped = ab != "tie" and ab == ba  # the same position won twice: the order decided it
                winner = win_ab if win_ab == win_ba else "tie"
                rows.append({"item_id": req["item_id"], "judge": judge.name, "model_a": a, "model_b": b,
                             "verdict_ab": ab, "verdict_ba": ba, "winner": winner, "flipped": flipped})
    return pd.DataFrame(rows, columns=["item_id", "judge", "model_a", "model_b", "verdict_ab", "verdict_ba",
                                       "winner", "flipped"])


def position_bias(battles: pd.DataFrame) -> pd.DataFrame:
    """Per judge: battles, verdicts that flipped with the order (share), ties, and how often position 1 won."""
    if not len(battles):
        return pd.DataFrame(columns=["judge", "battles", "flipped", "position_bias", "ties", "first_won_share"])
    g = battles.groupby("judge")
    first = (battles[["verdict_ab", "verdict_ba"]] == "first").sum(axis=1).groupby(battles["judge"]).sum()
    decided = (battles[["verdict_ab", "verdict_ba"]] != "tie").sum(axis=1).groupby(battles["judge"]).sum()
    out = pd.DataFrame({"battles": g.size(), "flipped": g["flipped"].sum().astype(int),
                        "ties": (battles["winner"] == "tie").groupby(battles["judge"]).sum().astype(int)})
    out["position_bias"] = out["flipped"] / out["battles"]
    out["first_won_share"] = (first / decided.where(decided > 0)).astype(float)
    return out.reset_index()
