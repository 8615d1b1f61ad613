"""What a sweep is: a recipe, a grid of ``--set`` values, seeds, and the points they make.

A grid is ``{"03_resolve.gate_scope": ["changes", "all"], ...}`` (keys as ``--set`` takes them); every
combination is a *configuration*, and every configuration runs once per seed (``--set seed=S``). One
configuration x seed is a *point*: a normal run of the recipe with those overrides.

The grid and seeds come from the command line (``--grid KEY=V1,V2``, ``--seeds 7,11,13``) or from the recipe's
``sweep:`` block; the command line wins::

    sweep:
      grid: {03_resolve.gate_scope: [changes, all]}
      seeds: [7, 11, 13]
      seed_key: seed        # the parameter a seed sets (default: seed)

The sweep's key hashes everything that decides its points (the recipe file and its content, grid, seeds, extra
``--set`` values, stages, ``--from``), so the same command finds the same sweep again and resumes it.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import yaml

from ..io import file_sha256, text_hash
from ..runner.recipe import RecipeError, load_recipe, parse_set
from ..stage import resolve_path

__all__ = ["SweepSpec", "Point", "parse_grid", "parse_seeds", "split_values", "spec_from_args"]


def split_values(raw: str) -> list[str]:
    """``"a,[b, c],{d: 1}"`` -> ``["a", "[b, c]", "{d: 1}"]``: commas outside brackets and quotes split."""
    out, depth, quote, cur = [], 0, None, ""
    for ch in raw:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return [x for x in out if x]


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["03_resolve.gate_scope=changes,all", "seed_share=0.1,0.2"]`` -> ``{key: [values]}`` (values as YAML)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise RecipeError(f"--grid {item!r}: expected KEY=V1,V2,...")
        if key in grid:
            raise RecipeError(f"--grid {key}: given twice")
        try:
            grid[key] = [yaml.safe_load(v) for v in split_values(raw)]
        except yaml.YAMLError:
            raise RecipeError(f"--grid {key}=...: a value is not valid YAML") from None
    return grid


def parse_seeds(raw: str | list | None) -> list[int]:
    """``"7,11,13"`` or ``[7, 11, 13]`` -> ``[7, 11, 13]`` (whole numbers, each once)."""
    if raw is None or raw == "":
        return []
    vals = split_values(raw) if isinstance(raw, str) else list(raw)
    try:
        seeds = [int(v) for v in vals]
    except (TypeError, ValueError):
        raise RecipeError(f"seeds {raw!r}: expected whole numbers, e.g. 7,11,13") from None
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"seeds {raw!r}: a seed is listed twice")
    return seeds


def _yaml(v: Any) -> str:
    """A value as ``--set`` reads it back (YAML, one line): ``"all"`` -> ``all``, ``"7"`` -> ``'7'``."""
    return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _fmt(v: Any) -> str:
    return v if isinstance(v, str) else _yaml(v)


@dataclass
class Point:
    point_id: str
    """``p000``, ``p001``, ... in grid order, seeds innermost."""
    config: str
    """The configuration as ``key=value, key=value`` (``recipe`` where the grid is empty)."""
    params: dict[str, Any]
    """The grid values of this configuration."""
    seed: int | None
    """The seed (None where the sweep has no seeds)."""
    sets: list[str]
    """Every ``--set`` the point's run gets: the sweep's own, the grid's, the seed's."""


@dataclass
class SweepSpec:
    recipe_path: str
    """The recipe file, as given."""
    recipe_name: str
    recipe_sha256: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    seed_key: str = "seed"
    """The parameter a seed sets (``seed``, or ``STAGE.KEY`` for one stage)."""
    sets: list[str] = field(default_factory=list)
    """``--set`` values every point gets."""
    stages: list[str] | None = None
    """``--stages`` of every point (None: the recipe's)."""
    from_run: str | None = None
    """``--from`` of every point."""

    @property
    def key(self) -> str:
        """What decides the points: the same key is the same sweep."""
        return text_hash(str(resolve_path(self.recipe_path)), self.recipe_sha256, self.grid, self.seeds,
                         self.seed_key, self.sets, self.stages, self.from_run, n=8)

    def new_id(self) -> str:
        """``20261203-101502_smoke_3fa9c1d2``: sortable by start time; ends with the key."""
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.recipe_name)[:40]
        return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}_{safe}_{self.key}"

    def configs(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def points(self) -> list[Point]:
        out = []
        for params in self.configs():
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "recipe"
            grid_sets = [f"{k}={_yaml(v)}" for k, v in params.items()]
            for seed in self.seeds or [None]:
                seed_set = [f"{self.seed_key}={seed}"] if seed is not None else []
                out.append(Point(f"p{len(out):03d}", label, params, seed, [*self.sets, *grid_sets, *seed_set]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def spec_from_args(recipe: str, *, grid: dict[str, list] | None = None, seeds: list[int] | None = None,
                   seed_key: str | None = None, sets: list[str] | None = None, stages: list[str] | None = None,
                   from_run: str | None = None) -> SweepSpec:
    """A sweep of ``recipe``: the grid and seeds given, else the recipe's ``sweep:`` block. Keys are checked
    against the recipe's stages here; values against the notebooks when the sweep starts."""
    r = load_recipe(recipe)
    block = dict(getattr(r, "sweep", None) or {})
    unknown = set(block) - {"grid", "seeds", "seed_key"}
    if unknown:
        raise RecipeError(f"{recipe}: sweep.{sorted(unknown)[0]} is not a sweep setting (grid, seeds, seed_key)")
    g = grid if grid else block.get("grid") or {}
    if not isinstance(g, dict) or not all(isinstance(v, list) and v for v in g.values()):
        raise RecipeError(f"{recipe}: sweep.grid maps each key to a non-empty list of values")
    s = seeds if seeds else parse_seeds(block.get("seeds"))
    key = seed_key or block.get("seed_key") or "seed"
    for k in [*g, key]:
        parse_set(f"{k}=0", r.stages)  # a stage prefix must be one of the recipe's stages
    if any(k == key or k.rpartition(".")[2] == key for k in g) and s:
        raise RecipeError(f"--grid {key}: the seed parameter is set by --seeds; sweep it there")
    if stages:
        stages = r.order_stages(stages)
    return SweepSpec(recipe_path=str(recipe), recipe_name=r.name, recipe_sha256=file_sha256(resolve_path(recipe)),
                     grid={k: list(v) for k, v in g.items()}, seeds=s, seed_key=key, sets=list(sets or []),
                     stages=stages, from_run=from_run)
