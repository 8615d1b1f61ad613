"""Cycle recipes: which stages run, with which parameters.

A recipe is a YAML file in ``params/``::

    name: demo
    description: A whole cycle on the embedded defaults.
    stages: [00_data, 01_calibrate, 02_judge, 03_resolve, 04_finetune, 05_evaluate]
    params:                  # every stage that declares the key receives it
      seed: 7
      taxonomy: params/taxonomy/segments.yaml
    stage_params:            # one stage only
      00_data: {n_production: 20000}

Unknown top-level keys are errors; unknown parameter keys, types, bounds and the files a run reads are checked
later against the notebooks themselves (:mod:`flywheel_lib.runner.params`), before anything runs.

No value anywhere in a recipe, a ``--set`` override or a panel file may be a secret (:func:`check_secrets`):
keys come only from environment variables, named in a panel file (``api_key_env: OPENAI_API_KEY``).
"""

from __future__ import annotations

import copy
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..stage import resolve_path
from ..stages.groups import GROUPS, merge_group

__all__ = ["Recipe", "RecipeError", "load_recipe", "parse_set", "check_secrets", "find_secret", "read_yaml_file",
           "STAGE_ORDER"]

STAGE_ORDER = ["00_data", "01_calibrate", "02_judge", "03_resolve", "04_finetune", "05_evaluate", "06_flywheel"]

_TOKEN = r"[A-Za-z0-9_\-]"
_SECRET_SHAPES = [  # (what it looks like, pattern); searched anywhere inside a string value
    ("an Anthropic API key", re.compile(rf"(?<![A-Za-z0-9])sk-ant-{_TOKEN}{{16,}}")),
    ("an OpenAI API key", re.compile(rf"(?<![A-Za-z0-9])sk-(?:proj-|svcacct-|admin-)?{_TOKEN}{{16,}}")),
    ("a Google API key", re.compile(rf"(?<![A-Za-z0-9])AIza{_TOKEN}{{30,}}")),
    ("a GitHub token", re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("an AWS access key id", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])")),
    ("a Hugging Face token", re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{20,}")),
    ("an xAI API key", re.compile(r"(?<![A-Za-z0-9])xai-[A-Za-z0-9]{20,}")),
    ("a bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{12,}=*")),
]
_KEY_LIKE_IN_TEXT = re.compile(  # `api_key=...`, `token: ...`, `?access_token=...` inside a longer string
    r"(?i)(?:api[_-]?key|access[_-]?key|secret|token|password|passwd|auth)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_\-./+]+)")
_SECRET_NAME_PARTS = {"token", "password", "passwd", "secret", "secrets", "apikey", "credential", "credentials",
                      "bearer", "authorization"}
_SECRET_NAME_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("auth", "token")}


class RecipeError(ValueError):
    """A recipe file, an override or a parameter is wrong; the message names the file and the key."""


def _name_parts(key: str) -> list[str]:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [p for p in re.split(r"[^a-z0-9]+", snake.lower()) if p]


def _secret_name(key: str) -> bool:
    """``api_key``, ``hf_token``, ``dbPassword``: a name that says it holds a secret (``*_env`` names a variable)."""
    parts = _name_parts(key)
    if not parts or parts[-1] == "env":
        return False
    return bool(set(parts) & _SECRET_NAME_PARTS) or any(pair in _SECRET_NAME_PAIRS for pair in zip(parts, parts[1:]))


def _random_token(s: str) -> bool:
    """A long token of letters and digits with the spread of characters a generated key has."""
    if len(s) < 20 or not re.search(r"[A-Za-z]", s) or not re.search(r"\d", s):
        return False
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) >= 3.5


def _shape(text: str) -> str | None:
    for what, pattern in _SECRET_SHAPES:
        if pattern.search(text):
            return what
    for m in _KEY_LIKE_IN_TEXT.finditer(text):
        if _random_token(m.group(1)):
            return "a long random token after a key-like name"
    return None


def find_secret(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first place in ``value`` (at any depth) that holds a secret: ``(dotted key path, what it looks like)``.

    >>> find_secret({"column_map": {"a": "b", "note": "sk-proj-" + "x1" * 12}}, "stage_params.00_data")
    ('stage_params.00_data.column_map.note', 'an OpenAI API key')
    """
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            sub = f"{path}.{key}" if path else key
            what = _shape(key)
            if what:
                return f"a key of {path or 'the top level'}", what
            if _secret_name(key) and v not in (None, "", False, [], {}):
                return sub, f"a value under a name that says secret ({key})"
            if isinstance(v, str) and {"key", "auth"} & set(_name_parts(key)) and _random_token(v.strip()):
                return sub, "a long random token under a key-like name"
            hit = find_secret(v, sub)
            if hit:
                return hit
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            hit = find_secret(v, f"{path}[{i}]")
            if hit:
                return hit
    elif isinstance(value, str):
        what = _shape(value)
        if what:
            return path or "(the value)", what
    return None


def check_secrets(value: Any, where: str, path: str = "") -> None:
    """Raise :class:`RecipeError` naming ``where`` (a file) and the key path if ``value`` holds a secret anywhere.

    The message never repeats the value.
    """
    hit = find_secret(value, path)
    if hit:
        key, what = hit
        raise RecipeError(
            f"{where}: {key} looks like a secret ({what}; the value is not shown). Secrets come only from "
            f"environment variables: name the variable in a judge panel file (api_key_env: ...), never the value."
        )


def _yaml_problem(e: yaml.YAMLError) -> str:
    """Where and what, without the snippet of the offending line (it may hold a secret)."""
    mark = getattr(e, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"not valid YAML{at}: {getattr(e, 'problem', None) or type(e).__name__}"


def read_yaml_file(path: str | Path, what: str, error=RecipeError) -> Any:
    """Parse a YAML file; a missing file, a folder, non-UTF-8 bytes or bad YAML is ``error`` naming the file."""
    p = resolve_path(path)
    if not p.exists():
        raise error(f"{what} {path} does not exist (resolved to {p})")
    if p.is_dir():
        found = sorted(x.name for x in p.glob("*.y*ml"))
        hint = f"; YAML files in it: {', '.join(found)}" if found else ""
        raise error(f"{what} {path} is a folder, not a file{hint}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                    f"save it as UTF-8") from None
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{what} {path}: {_yaml_problem(e)}") from None


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    """Short name, part of every run id."""
    description: str = ""
    stages: list[str] = Field(default_factory=lambda: list(STAGE_ORDER[:-1]))
    """Stage notebooks to execute, in order (names under ``notebooks/`` without ``.ipynb``)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters for every stage that declares them."""
    stage_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Parameters for one stage, overriding ``params``."""
    notebook_dir: str = "notebooks"
    """Where the stage notebooks are (relative to the project root)."""
    cycles: dict[str, Any] = Field(default_factory=dict)
    """Settings for ``flywheel cycles`` (multi-cycle runs)."""
    sweep: dict[str, Any] = Field(default_factory=dict)
    """Settings for ``flywheel sweep``: ``grid`` (``--set`` key -> values), ``seeds``, ``seed_key``."""
    path: str = ""
    """Where it was read from."""

    def for_stage(self, stage: str, declared: set[str]) -> dict[str, Any]:
        """The parameters passed to ``stage``: shared ones it declares, then its own."""
        out = {k: v for k, v in self.params.items() if k in declared}
        for k, v in self.stage_params.get(stage, {}).items():
            out[k] = merge_group(k, out[k], v) if k in out else v
        return out

    def order_stages(self, stages: list[str]) -> list[str]:
        """``stages`` in the recipe's order, each once (``03_resolve,02_judge`` runs 02 first); unknown ones fail."""
        unknown = [s for s in stages if s not in self.stages]
        if unknown:
            raise RecipeError(f"--stages {','.join(unknown)}: not in recipe {self.path or self.name} "
                              f"(stages: {', '.join(self.stages)})")
        return [s for s in self.stages if s in stages]

    def with_overrides(self, sets: list[str]) -> Recipe:
        """Apply ``--set key=value``, ``--set group.key=value`` and ``--set stage.key=value`` (or
        ``stage.group.key``) overrides, values parsed as YAML; a group's key is set within what the recipe gave.

        The command line has the last word: ``--set key=value`` without a stage also replaces the value of any
        ``stage_params`` entry of the recipe that sets ``key`` (else the recipe's stage value would win)."""
        r = self.model_copy(deep=True)
        for s in sets:
            stage, key, value = parse_set(s, self.stages)
            check_secrets({key: value}, f"--set {stage + '.' if stage else ''}{key} (on {self.path or self.name})",
                          f"stage_params.{stage}" if stage else "params")
            name, _, sub = key.partition(".")
            if stage:
                targets = [r.stage_params.setdefault(stage, {})]
            else:
                targets = [r.params, *(sp for sp in r.stage_params.values() if name in sp)]
            for target in targets:
                if sub:  # one key of a group
                    base = target.get(name)
                    target[name] = {**(base if isinstance(base, dict) else {}), sub: value}
                else:
                    target[key] = value
        check_secrets(r.model_dump(exclude={"path"}), r.path or r.name)
        return r


def parse_set(s: str, stages: list[str]) -> tuple[str | None, str, Any]:
    """``"n_items=200"`` -> (None, "n_items", 200); ``"02_judge.panel=x.yaml"`` -> ("02_judge", "panel", "x.yaml");
    ``"head.kind=minilm"`` -> (None, "head.kind", "minilm"): a group's key (:mod:`flywheel_lib.stages.groups`).

    Errors name the key only: the value may be a secret.
    """
    if "=" not in s:
        check_secrets(s, "--set", "(the argument)")
        raise RecipeError(f"--set {s!r}: expected key=value")
    key, _, raw = s.partition("=")
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        check_secrets(raw, f"--set {key}", key)
        raise RecipeError(f"--set {key}=...: the value is {_yaml_problem(e)}") from None
    stage = None
    first, dot, rest = key.partition(".")
    if dot and first not in GROUPS:
        stage, key = first, rest
        if stage not in stages:
            raise RecipeError(f"--set {stage}.{key}: stage {stage!r} is not in the recipe "
                              f"(stages: {', '.join(stages)}), nor a parameter group ({', '.join(GROUPS)})")
    parts = key.split(".")
    if len(parts) > 2 or not all(p.isidentifier() for p in parts) or (len(parts) == 2 and parts[0] not in GROUPS):
        raise RecipeError(f"--set {key!r}: not a parameter name, nor a group's key (group.key; groups: "
                          f"{', '.join(GROUPS)})")
    return stage, key, value


def _check_stage_list(r: Recipe, path: str | Path) -> None:
    if not r.stages:
        raise RecipeError(f"{path}: stages is empty; name the stage notebooks to run, e.g. [00_data, 01_calibrate]")
    dup = sorted({s for s in r.stages if r.stages.count(s) > 1})
    if dup:
        raise RecipeError(f"{path}: stages lists {', '.join(dup)} more than once")
    known = [s for s in r.stages if s in STAGE_ORDER]
    canonical = sorted(known, key=STAGE_ORDER.index)
    if known != canonical:
        raise RecipeError(f"{path}: stages must run in stage order ({', '.join(canonical)}), not {', '.join(known)}")
    for s in r.stage_params:
        if s not in r.stages:
            raise RecipeError(f"{path}: stage_params.{s} names a stage that is not in stages ({', '.join(r.stages)})")


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file: secrets at any depth, keys, and its stage list; errors name the file and key."""
    data = read_yaml_file(path, "recipe")
    if data is None:
        raise RecipeError(f"recipe {path} is empty; a recipe names its stages and params (see params/smoke.yaml)")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with name, stages, params")
    check_secrets(data, str(path))  # first: no later message may echo a secret
    if not any(data.get(k) for k in ("stages", "params", "stage_params")):
        raise RecipeError(f"{path}: no stages and no params; a recipe names its stages and params "
                          f"(see params/smoke.yaml)")
    data = copy.deepcopy(data)
    data.setdefault("name", resolve_path(path).stem)
    try:
        r = Recipe(**data, path=str(path))
    except ValidationError as e:
        errs = "; ".join(f"key {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise RecipeError(f"{path}: {errs}") from None
    _check_stage_list(r, path)
    return r
