"""Constrained decoding: every answer is a query that parses and validates, or a refusal line.

The grammar is the domain's own (:func:`flywheel_lib.domains.base.output_grammar`, for the segments domain
:func:`flywheel_lib.domains.segments.ebnf.query_grammar`, built from the schema catalog) with the refusal line of
:mod:`flywheel_lib.training.targets` as the other branch::

    root ::= query | refusal
    refusal ::= "REFUSE " ("needs_context" | "missing_capability" | ...) ": " [^\\n]{0,200}

xgrammar (Dong et al. 2024, "XGrammar: Flexible and Efficient Structured Generation Engine for Large Language
Models", arXiv:2411.15100) compiles it against the tokenizer once and masks, at every decoding step, the tokens that
would leave the grammar. :class:`GrammarLogitsProcessor` is a ``transformers`` logits processor over a batch; it also
keeps the one validator rule a context-free grammar cannot (``BETWEEN low AND high`` needs ``low <= high`` for
numbers): while the high bound is below the low one, the number may not end.

    grammar = answer_grammar(dom, refusal_ids=tax.refusal_ids)      # None for a domain without a grammar
    dec = ConstrainedDecoder(tok, grammar, vocab_size=model.config.vocab_size)
    model.generate(..., logits_processor=[dec.processor()])

The token budget matters: the last steps steer an unfinished answer to its nearest end, but a query begun with a
long subject and an absolute date needs ~20 tokens to close, so ``max_new_tokens`` below ~32 can still cut one off
(at 20 the untuned model left ``customer_added_date = '2022-01-0``); at 40 and more no cut answer was seen.

xgrammar is the ``constrained`` extra; importing this module does not need it, building a decoder does.
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["query_grammar", "answer_grammar", "ConstrainedDecoder", "GrammarLogitsProcessor"]

_BETWEEN_HIGH = re.compile(r"BETWEEN (\d+(?:\.\d+)?) AND (\d*\.?\d*)$")


def answer_grammar(domain: Any, refusal_ids: list[str] | tuple[str, ...], *, refusal_chars: int = 200) -> str | None:
    """The full answer grammar (GBNF, start rule ``root``): the domain's query grammar or the refusal line.

    None when the domain offers no grammar. ``refusal_chars`` bounds the free text after ``REFUSE <category>: ``.
    """
    from ..domains.base import output_grammar
    from ..training.targets import REFUSE

    query = output_grammar(domain)
    if query is None:
        return None
    if not refusal_ids:
        raise ValueError("answer_grammar: no refusal categories given (the taxonomy's non-solvable ids)")
    bad = [c for c in refusal_ids if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(c))]
    if bad:
        raise ValueError(f"answer_grammar: refusal ids must be snake_case words, got {bad}")
    cats = " | ".join(f'"{c}"' for c in refusal_ids)
    head = ("root ::= query | refusal\n"
            f'refusal ::= "{REFUSE} " ({cats}) ": " [^\\n]{{0,{int(refusal_chars)}}}\n')
    return head + query


def query_grammar(answer: str) -> str:
    """The query branch alone of a grammar written by :func:`answer_grammar` (start rule ``root``): what a decoder
    may write once a decision head has said "write a query"."""
    head = "root ::= query | refusal\n"
    first, _, body = answer[len(head):].partition("\n") if answer.startswith(head) else ("", "", "")
    if not first.startswith("refusal ::="):
        raise ValueError("query_grammar: not a grammar written by answer_grammar (root ::= query | refusal)")
    return "root ::= query\n" + body


def _xgrammar():
    try:
        import xgrammar
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "constrained decoding needs xgrammar: pip install 'flywheel-workbench[constrained]' "
            "(or set constrained: false)") from e
    return xgrammar


class ConstrainedDecoder:
    """A grammar compiled once for one tokenizer; :meth:`processor` gives a fresh logits processor per batch."""

    def __init__(self, tokenizer, grammar: str, *, vocab_size: int | None = None):
        xgr = _xgrammar()
        self.grammar = grammar
        """The GBNF text (start rule ``root``)."""
        self.info_ = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiled_ = xgr.GrammarCompiler(self.info_).compile_grammar(grammar)
        """The grammar compiled against the tokenizer's vocabulary."""
        self.vocab_size = self.info_.vocab_size
        """Rows of the token mask (the model's vocabulary size)."""
        self.eos_ids = set(self.info_.stop_token_ids)
        self.dead_ends_: list[str] = []
        """Every dead end met by this decoder's processors (a grammar state that allows no token, or a token the
        grammar refused), as ``"<why> after '<text>'"``: each such row ended as an invalid answer."""
        # The high bound of a BETWEEN may only end once it is >= the low bound: per token, the digits it starts with
        # and whether anything else follows them (then the number ends inside this token).
        decoded = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self._tok_text = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in decoded]
        import torch

        self._nondigit = []
        self._mixed: list[tuple[int, str]] = []
        self._dotted: list[tuple[int, str]] = []
        for i, t in enumerate(self._tok_text):
            lead = re.match(r"[\d.]*", t).group(0)
            if not lead:
                self._nondigit.append(i)
            elif len(lead) < len(t):
                self._mixed.append((i, lead))
            elif "." in lead:
                self._dotted.append((i, lead))
        self._nondigit = torch.tensor(self._nondigit + sorted(self.eos_ids), dtype=torch.long)
        self._digits = torch.tensor([i for i, lead in self._dotted] + [
            i for i, t in enumerate(self._tok_text) if t and re.fullmatch(r"\d+", t)], dtype=torch.long)
        self._joiners = torch.tensor([i for i, t in enumerate(self._tok_text)
                                      if t.strip() and (re.fullmatch(r"\s*(AND|OR|A|AN|O)\s*", t)
                                                        or ("(" in t and ")" not in t))], dtype=torch.long)
        self._opens = torch.tensor([i for i, t in enumerate(self._tok_text) if "(" in t], dtype=torch.long)
        self._closers = torch.tensor([i for i, t in enumerate(self._tok_text) if "'" in t or ")" in t],
                                     dtype=torch.long)
        self.tokenizer = tokenizer

    def matches(self, text: str) -> bool:
        """Whether ``text`` is a complete answer of the grammar (the tokenizer's own tokens, then the stop token)."""
        xgr = _xgrammar()
        m = xgr.GrammarMatcher(self.compiled_)
        for t in self.tokenizer(text, add_special_tokens=False)["input_ids"]:
            if not m.accept_token(t):
                return False
        return m.is_completed() if hasattr(m, "is_completed") else m.accept_token(next(iter(self.eos_ids)))

    def processor(self, max_new_tokens: int | None = None, finish_tokens: int = 24,
                  group_tokens: int = 40) -> GrammarLogitsProcessor:
        """A fresh processor for one ``generate`` call; with ``max_new_tokens``, the last ``finish_tokens`` steps
        steer every unfinished answer to its nearest end, and no parenthesised group opens in the last
        ``group_tokens`` steps, so no answer is cut off mid-query."""
        return GrammarLogitsProcessor(self, max_new_tokens=max_new_tokens, finish_tokens=finish_tokens,
                                      group_tokens=group_tokens)


def _tail_between(text: str) -> tuple[float, str] | None:
    m = _BETWEEN_HIGH.search(text)
    return (float(m.group(1)), m.group(2)) if m else None


class GrammarLogitsProcessor:
    """Masks each row's logits to the grammar's next tokens (one use: a new processor per ``generate`` call)."""

    def __init__(self, decoder: ConstrainedDecoder, *, max_new_tokens: int | None = None, finish_tokens: int = 24,
                 group_tokens: int = 40):
        self.dec = decoder
        self.max_new_tokens = max_new_tokens
        self.finish_tokens = finish_tokens
        self.group_tokens = group_tokens
        self.step = 0
        self.matchers: list = []
        self.texts: list[str] = []
        self.bitmask = None
        self.started = False
        self.dead_: dict[int, str] = {}
        """Rows (of this batch) that reached a dead end, with the text they had written."""

    def __call__(self, input_ids, scores):
        import torch

        xgr = _xgrammar()
        n = input_ids.shape[0]
        if not self.matchers:
            self.matchers = [xgr.GrammarMatcher(self.dec.compiled_) for _ in range(n)]
            self.texts = [""] * n
            self.bitmask = xgr.allocate_token_bitmask(n, self.dec.vocab_size)
        if self.started:
            for i, m in enumerate(self.matchers):
                if self._live(i):
                    tok = int(input_ids[i, -1])
                    if not m.accept_token(tok):
                        self._dead_end(i, f"token {tok} left the grammar")
                        continue
                    if tok < len(self.dec._tok_text):
                        self.texts[i] += self.dec._tok_text[tok]
        self.started = True
        for i, m in enumerate(self.matchers):
            if self._live(i):
                m.fill_next_token_bitmask(self.bitmask, i)
        xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device))
        for i in range(n):
            if not self._live(i):
                continue
            if not bool(torch.isfinite(scores[i]).any()):
                self._dead_end(i, "the grammar allows no next token")
                continue
            tail = _tail_between(self.texts[i])
            if tail is None:
                continue
            low, high = tail
            try:
                reached = high not in ("", ".") and float(high) >= low
            except ValueError:
                reached = False
            if reached:
                continue
            before = scores[i].clone()
            self._between(i, scores, low, high)
            if not bool(torch.isfinite(scores[i]).any()):
                # No continuation lets the high bound reach the low one: the number ends here (the validator
                # rejects the answer) rather than the row having no token at all.
                scores[i] = before
                scores[i, self.dec._digits[self.dec._digits < scores.shape[1]]] = float("-inf")
                if not bool(torch.isfinite(scores[i]).any()):
                    scores[i] = before
        for i in self.dead_:
            self._stop(i, scores)
        left = None if self.max_new_tokens is None else self.max_new_tokens - self.step
        if left is not None and left <= self.group_tokens:
            opens = self.dec._opens[self.dec._opens < scores.shape[1]]
            for i in range(n):
                if self._live(i) and (not self.texts[i] or self.texts[i][-1] in " ("):
                    scores[i, opens] = float("-inf")  # an atom starts here: a "(" would open a group
        if left is not None and left <= self.finish_tokens:
            for i in range(n):
                if self._live(i):
                    self._finish(i, scores)
        self.step += 1
        return scores

    def _live(self, i: int) -> bool:
        return i not in self.dead_ and not self.matchers[i].is_terminated()

    def _dead_end(self, i: int, why: str) -> None:
        """Row ``i`` reached a state its grammar cannot leave: it ends here with what it wrote (an incomplete answer,
        which the scorer counts as invalid), and the other rows of the batch go on."""
        self.dead_[i] = f"{why} after {self.texts[i]!r}"
        self.dec.dead_ends_.append(self.dead_[i])
        logger.warning("constrained decoding: row %d %s; it ends as an invalid answer", i, self.dead_[i])

    def _stop(self, i: int, scores) -> None:
        """Only the stop token for row ``i`` (a dead row ends now; its later steps are padding)."""
        eos = next(iter(sorted(self.dec.eos_ids)), 0)
        scores[i] = float("-inf")
        if eos < scores.shape[1]:
            scores[i, eos] = 0.0

    def _finish(self, i: int, scores) -> None:
        """Near the token budget: end now where the grammar allows it, else prefer tokens that close a string or a
        bracket and avoid ones that start another condition (a soft penalty: taken only when nothing else fits)."""
        row = scores[i]
        eos = [t for t in self.dec.eos_ids if t < row.shape[0] and row[t] > float("-inf")]
        if eos:
            row[:] = float("-inf")
            row[eos[0]] = 0.0
            return
        row[self.dec._joiners[self.dec._joiners < row.shape[0]]] -= 1e4
        row[self.dec._closers[self.dec._closers < row.shape[0]]] += 1e4

    def _between(self, i: int, scores, low: float, high: str) -> None:
        """The high bound of a BETWEEN is still below the low one: forbid every token that would end it there."""
        import torch

        scores[i, self.dec._nondigit[self.dec._nondigit < scores.shape[1]]] = float("-inf")
        bad = [t for t, lead in self.dec._mixed if t < scores.shape[1] and not _ge(high + lead, low)]
        # A decimal point fixes the whole part, and decimals add less than 1: a point is allowed only while the
        # whole part can still reach the low bound.
        bad += [t for t, lead in self.dec._dotted if t < scores.shape[1] and not _whole_can_reach(high + lead, low)]
        if bad:
            scores[i, torch.tensor(bad, dtype=torch.long)] = float("-inf")


def _whole_can_reach(number: str, low: float) -> bool:
    """Whether a number written so far as ``number`` (with a decimal point) can still be ``>= low``."""
    whole = number.split(".", 1)[0]
    try:
        return (float(whole) if whole else 0.0) + 1 > low
    except ValueError:
        return False


def _ge(number: str, low: float) -> bool:
    try:
        return float(number) >= low
    except ValueError:
        return False
