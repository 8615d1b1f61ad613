"""Parameter groups: settings that belong together (the decision head, a lever, the review) declared as one notebook
parameter holding a dict, e.g. ``head: dict = {"kind": "none", "C": 8.0, ...}``.

The notebook's parameters cell keeps every group's defaults; the model here is the group's contract: each key's
type, bounds and meaning. The runner checks a recipe's groups key by key against it before a run (an unknown key, a
wrong type or a value out of bounds names ``params.head.C``), and a recipe, ``stage_params`` or ``--set head.C=4``
may give only some keys: the others keep the notebook's defaults. A stage's configuration holds the validated model,
so a step reads ``cfg.head.kind``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ParamGroup(BaseModel):
    """A group's keys: strict types (no coercion), no unknown keys, read-only."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ValidationParams(ParamGroup):
    """00_data: the input validators run on production rows."""

    checks: list[Literal["topic", "length", "language", "personal_data", "injection", "anomaly"]] = Field(
        description="the validators to run")
    routing: Literal["flag", "review", "drop"] = Field(description="what happens to a flagged production row")
    topic_min_similarity: float = Field(ge=-1, le=1, description=(
        "topic: flag a request whose nearest seed request is less cosine-similar than this"))
    min_tokens: int = Field(ge=0, description="length: flag a request with fewer word tokens")
    max_tokens: int = Field(ge=1, description="length: flag a request with more word tokens")
    language: str = Field(description="language: the language requests should be in (ISO 639-1)")
    language_method: Literal["auto", "stopwords", "langdetect"] = Field(description=(
        "language: auto (function words, langdetect when undecided), stopwords or langdetect"))
    anomaly_quantile: float = Field(ge=0, le=1, description=(
        "anomaly: flag below this quantile of the history's own nearest-neighbour similarity"))
    encoder: Literal["minilm", "static"] = Field(description=(
        'topic and anomaly: sentence vectors from "minilm" (the transformer) or "static" (its token embeddings: '
        "fast and coarse, for millions of rows)"))


class ReviewParams(ParamGroup):
    """03_resolve: who reviews the priority queue, how many items, and how several answers are resolved."""

    budget: int = Field(ge=0, description="items a person reviews, from the top of the priority queue (0 for none)")
    source: Literal["auto", "people", "simulated"] = Field(description=(
        "who answers the review queue and the audit: people (exported for people, a filled file comes back by "
        "review_import; the truth is never read), simulated (a simulated reviewer answers from the truth table) or "
        "auto (simulated on generated data, people on user data)"))
    simulated_error_rate: float = Field(ge=0, le=1, description=(
        "generated data: share of the simulated reviewer's answers that are wrong"))
    per_item: int = Field(ge=1, description=(
        "people who answer each review item, audit items included; above 1 (or with reviewers named) the queue "
        "goes out as one file per reviewer and the answers come back resolved by resolution"))
    reviewers: list[str] = Field(description=(
        "reviewers' names, one review file each (empty: reviewer_1 .. reviewer_k for per_item k)"))
    resolution: Literal["majority", "unanimous", "dawid_skene"] = Field(description=(
        "several answers to one label: majority (more than half of the answers), unanimous or dawid_skene "
        "(Dawid-Skene over the reviewers); an item left unsettled goes to review_requeue.csv, unlabelled"))


class AuditParams(ParamGroup):
    """03_resolve: the audit of the gate's precision on production (a sample of accepted labels, reviewed blind)."""

    half_width: float = Field(gt=0, le=0.5, description=(
        "target half-width of the 95% interval of the gate's precision on production; sizes the sample"))
    max: int = Field(ge=0, description="most accepted labels sampled for review (0: no audit unless n)")
    n: int = Field(ge=0, description="force this sample size (0 sizes it from half_width and max)")


class TrainingParams(ParamGroup):
    """04_finetune: the adapter's training, the same for every variant."""

    max_steps: int = Field(ge=1, description="optimizer steps per variant")
    batch_size: int = Field(ge=1, description="examples per step")
    lr: float = Field(gt=0, description="peak learning rate")
    lr_schedule: Literal["cosine", "linear", "constant"] = Field(description="after warm-up")
    lora_r: int = Field(ge=1, description="LoRA rank (alpha is twice the rank)")
    lora_targets: Literal["all-linear", "attention"] = Field(description=(
        'modules with adapters: "all-linear" (attention and MLP) or "attention"'))
    max_len: int = Field(ge=1, description="longest training example in tokens")
    val_frac: float = Field(ge=0, lt=1, description="share of every class held out for validation loss")


class HeadParams(ParamGroup):
    """04_finetune: the decision head, a classifier fitted on the same rows that decides when to refuse while the
    decoder writes the query."""

    kind: Literal["none", "minilm", "hybrid", "finetuned"] = Field(description=(
        '"none" (the decoder decides when to refuse), "minilm" (logistic regression on sentence embeddings), '
        '"hybrid" (embeddings + TF-IDF n-grams) or "finetuned" (all-MiniLM-L6-v2 fine-tuned as the classifier)'))
    C: float = Field(gt=0, description=(
        "minilm / hybrid: inverse regularisation strength (chosen by family-grouped CV on the seed: "
        "benchmarks/bench_head.py)"))
    epochs: float = Field(gt=0, description="finetuned: passes over its rows")
    lr: float = Field(gt=0, description="finetuned: the encoder's peak learning rate")
    members: int = Field(ge=1, description=(
        "finetuned: encoders fine-tuned with seeds seed, seed + 1, ... whose class probabilities are averaged "
        "(each costs one more fit)"))
    threshold: float = Field(ge=0, le=1, description="refuse when P(not solvable) is at least this")
    rows: Literal["all", "train"] = Field(description=(
        '"all" (every refusal row of the training split, solvable rows drawn to refusal_share) or "train" '
        "(exactly the adapter's max_steps x batch_size rows)"))
    refusal_share: float = Field(ge=0, lt=1, description=(
        'with rows "all": the refusal share of its rows (0 means max_refusal_share, the adapter\'s)'))
    max_false_refusal: float = Field(ge=0, le=1, description=(
        "above 0, each head's threshold is instead the lowest whose false-refusal rate, out of fold over held-out "
        "phrasing clusters of its training rows, is at most this"))


class ComparisonParams(ParamGroup):
    """05_evaluate: extra decodes of the candidate that show what the grammar and the decision head do."""

    decoders: bool = Field(description="also decode the candidate without the grammar, to show the effect")
    heads: bool = Field(description=(
        "a candidate with a decision head: also let its decoder decide alone, to show the head's effect"))
    every_cycle: bool = Field(description=(
        "in every cycle (False: only in a run without parent_run, a lineage's first cycle; a later cycle saves "
        "the two extra decodes)"))


class RetrievalParams(ParamGroup):
    """05_evaluate, lever 1: retrieved few-shot examples from the example store, in the prompt and at the decision."""

    k: int = Field(ge=0, description=(
        "stored examples retrieved per request for the retrieval_fewshot variant (0 means skip it)"))
    model: str = Field(description="the model prompted with the examples: deployed, base, or a variant name")
    min_score: float = Field(gt=0, le=1, description=(
        "at the decision: the cosine a stored labelled example needs to count"))
    min_share: float = Field(gt=0.5, le=1, description=(
        "at the decision: the share of the close examples' similarity one label needs to decide"))
    scope: Literal["new", "all"] = Field(description=(
        'at the decision: "new" consults the examples added after the lineage\'s first cycle (the labelled '
        'traffic), "all" the whole store'))
    admit: Literal["agreed", "all"] = Field(description=(
        'at the decision: "agreed" consults only examples whose label the panel, a person or the tree decided, not '
        'a logged label kept for want of a contradiction (for traffic, the deployed model\'s own decision); "all" '
        'every consulted example'))
    overrule: Literal["refusals", "both"] = Field(description=(
        'at the decision: "refusals" lets the store turn the head\'s answer into a refusal but never withdraw the '
        'head\'s refusal (an answerable neighbour shares the filters, not the reason for refusing); "both" lets it '
        'decide either way (a capability change is then answered before the next fine-tune)'))


class DpoParams(ParamGroup):
    """05_evaluate, lever 4: preference optimization (DPO) of the curated adapter on pairs from judged traffic."""

    steps: int = Field(ge=0, description=(
        "optimizer steps of the curated_dpo variant, from the second cycle (0 means off, the default: see the "
        "levers method note)"))
    batch_size: int = Field(ge=1, description="preference pairs per step")
    beta: float = Field(gt=0, description="how far the policy may move from the curated adapter")
    lr: float = Field(gt=0, description="learning rate")
    pairs: Literal["auto", "all", "query"] = Field(description=(
        '"auto" (with a decision head only pairs whose chosen answer is a query: the head makes the refusal '
        'decision), "all" or "query"'))
    max_pairs: int = Field(ge=1, description="at most this many preference pairs are trained on (a seeded sample)")
    min_pairs: int = Field(ge=0, description="DPO runs only on at least this many usable pairs")


class ArenaParams(ParamGroup):
    """05_evaluate: arena battles between the models, from the second cycle, with Elo ratings."""

    n: int = Field(ge=0, description=(
        "at most this many requests every model's answers battle on, stratified (all when there are fewer; 0 skips "
        "the arena). Held-out requests reuse the scored answers, so the default takes them all: a sample of a few "
        "hundred leaves Elo differences of the size one cycle brings inside the noise. Traffic requests are decoded "
        "by every model: set n to what that may cost"))
    boot: int = Field(ge=1, description="bootstrap resamples for the Elo intervals")
    requests: Literal["heldout", "traffic"] = Field(description=(
        "heldout: the original eval and the drift slice, judged against their true labels and queries, with the "
        "answers already scored; traffic: judged traffic with the panel's accepted labels, a correct query known "
        "only from human-labelled rows (never a logged answer of the deployed model), every model decoding anew"))


class PromotionParams(ParamGroup):
    """05_evaluate: the promotion rule."""

    alpha: float = Field(gt=0, lt=1, description="significance level of the paired tests and the promotion rule")
    false_refusal_tolerance: float = Field(ge=0, lt=1, description=(
        "a significant rise in false refusals blocks only above this rate (0 means any significant rise blocks)"))
    non_inferiority_margin: float = Field(ge=0, lt=1, description=(
        "a later cycle: the candidate may pass at most this much less than the deployed model on the original "
        "eval"))


#: Each group's parameter name and model; the notebooks that declare it hold its defaults.
GROUPS: dict[str, type[ParamGroup]] = {
    "validation": ValidationParams,
    "review": ReviewParams,
    "audit": AuditParams,
    "training": TrainingParams,
    "head": HeadParams,
    "comparisons": ComparisonParams,
    "retrieval": RetrievalParams,
    "dpo": DpoParams,
    "arena": ArenaParams,
    "promotion": PromotionParams,
}

#: Flat parameter names of earlier recipes -> where they live now, for the runner's "unknown parameter" hint.
RENAMED: dict[str, str] = {
    **{k: f"validation.{v}" for k, v in {
        "validators": "checks", "validator_routing": "routing", "topic_min_similarity": "topic_min_similarity",
        "min_tokens": "min_tokens", "max_tokens": "max_tokens", "expected_language": "language",
        "language_method": "language_method", "anomaly_quantile": "anomaly_quantile",
        "validator_encoder": "encoder"}.items()},
    **{k: f"review.{v}" for k, v in {
        "review_budget": "budget", "review_source": "source", "reviewer_error_rate": "simulated_error_rate",
        "reviewers_per_item": "per_item", "reviewers": "reviewers", "review_resolution": "resolution"}.items()},
    "audit_half_width": "audit.half_width", "audit_max": "audit.max", "audit_n": "audit.n",
    **{k: f"training.{k}" for k in ("max_steps", "batch_size", "lr", "lr_schedule", "lora_r", "lora_targets",
                                    "max_len", "val_frac")},
    "decision_head": "head.kind",
    **{f"head_{k}": f"head.{k}" for k in ("C", "epochs", "lr", "members", "threshold", "rows", "refusal_share",
                                         "max_false_refusal")},
    "compare_decoders": "comparisons.decoders", "compare_heads": "comparisons.heads",
    "retrieval_k": "retrieval.k", "retrieval_model": "retrieval.model", "store_min_score": "retrieval.min_score",
    "store_min_share": "retrieval.min_share", "store_scope": "retrieval.scope",
    **{f"dpo_{k}": f"dpo.{k}" for k in ("steps", "batch_size", "beta", "lr", "pairs", "max_pairs", "min_pairs")},
    "arena_n": "arena.n", "arena_boot": "arena.boot",
    "alpha": "promotion.alpha", "false_refusal_tolerance": "promotion.false_refusal_tolerance",
    "non_inferiority_margin": "promotion.non_inferiority_margin",
}


class GroupError(ValueError):
    """A group's value that does not fit its model; the message names each key at fault."""


def check_group(name: str, value: Any, default: dict | None = None, *, key: str = "") -> ParamGroup:
    """``value`` (some or all of group ``name``'s keys) over ``default`` (the notebook's), validated key by key.
    Raises :class:`GroupError` naming each key at fault as ``<key>.<group key>`` (``key`` defaults to the group's
    name): unknown ones (with the keys the group has), a wrong type, a value out of bounds."""
    model = GROUPS[name]
    key = key or name
    fields = ", ".join(model.model_fields)
    if not isinstance(value, dict):
        raise GroupError(f"{key} is a {type(value).__name__}, but {name} is a group: a mapping of some of {fields}")
    unknown = sorted(set(value) - set(model.model_fields))
    if unknown:
        raise GroupError(f"{key} has no key {', '.join(map(repr, unknown))} (group {name}: {fields})")
    merged = {**(default or {}), **value}
    try:
        return model.model_validate(merged)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            at = ".".join(str(p) for p in err["loc"])
            if err["type"] == "missing":
                problems.append(f"{key}.{at} is missing")
            else:
                problems.append(f"{key}.{at} = {err.get('input')!r}: {err['msg']}")
        raise GroupError("; ".join(problems)) from None


def merge_group(name: str, base: Any, override: Any) -> Any:
    """``override``'s keys over ``base``'s where both are mappings (a recipe may give only some of a group's keys);
    otherwise ``override``."""
    if name in GROUPS and isinstance(base, dict) and isinstance(override, dict):
        return {**base, **override}
    return override


def _type_text(annotation: Any) -> str:
    """``Literal['a', 'b']`` -> ``"a" | "b"``; ``list[Literal[...]]`` -> ``list of "a" | "b"``; else the name."""
    from typing import get_args, get_origin

    if get_origin(annotation) is Literal:
        return " | ".join(f'"{a}"' for a in get_args(annotation))
    if get_origin(annotation) is list:
        (inner,) = get_args(annotation) or (Any,)
        return f"list of {_type_text(inner)}"
    return getattr(annotation, "__name__", str(annotation))


def _bound_text(key: str, metadata: list) -> str:
    """The pydantic bounds of a key as ``0 < C``, ``0 <= threshold <= 1`` (empty when unbounded)."""
    lo = hi = ""
    for m in metadata:
        for attr, side, op in (("ge", "lo", "<="), ("gt", "lo", "<"), ("le", "hi", "<="), ("lt", "hi", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                if side == "lo":
                    lo = f"{v} {op} "
                else:
                    hi = f" {op} {v}"
    return f"{lo}{key}{hi}" if lo or hi else ""


def group_rows(name: str, default: dict) -> list[tuple[str, str, Any, str, str]]:
    """Each key of group ``name`` as (``name.key``, type, the notebook's default, bound, help), for the parameter
    reference and ``flywheel params``."""
    rows = []
    for key, f in GROUPS[name].model_fields.items():
        rows.append((f"{name}.{key}", _type_text(f.annotation), default.get(key), _bound_text(key, f.metadata),
                     f.description or ""))
    return rows
