"""The bundled domain: a Shopify-like customer segment query language.

>>> dom = SegmentsDomain(n_customers=300)
>>> dom.check_output("amount_spent > 100 AND customer_tags CONTAINS 'vip'").attributes
('amount_spent', 'customer_tags')
>>> dom.canonical("amount_spent>100 and (customer_tags contains \\"vip\\")")
"amount_spent > 100 AND customer_tags CONTAINS 'vip'"
>>> dom.same_result("number_of_orders >= 1", "first_order_date IS NOT NULL")
True

Modules: ``language`` (grammar, AST, canonical printer; syntax reference in its docstring), ``catalog`` (the YAML
schema), ``validator``, ``store`` (the generated customers), ``executor``; ``generator`` makes requests.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..base import DomainError, OutputCheck
from .catalog import Catalog, load_catalog
from .executor import SegmentExecutor
from .language import ParseError, parse, subjects, to_text
from .store import Store, build_store
from .validator import ValidationError, validate

__all__ = ["SegmentsDomain", "ParseError", "ValidationError", "parse", "to_text", "load_catalog", "build_store"]


class SegmentsDomain:
    """The segments domain: catalog, checker, executor over a generated store, and the request generator."""

    name = "segments"

    def __init__(self, store_seed: int = 0, n_customers: int = 3000):
        self.store_seed = store_seed
        """Seed of the customer store the executor runs on."""
        self.n_customers = n_customers
        """Number of generated customers."""
        self.schema: Catalog = load_catalog()
        """The loaded catalog (lookups, synonyms)."""
        self.catalog: dict[str, Any] = self.schema.data
        """The catalog as a dict (the Domain protocol)."""
        self._executor: SegmentExecutor | None = None

    @property
    def store(self) -> Store:
        """The generated store (customers, orders, purchases, email_opens DataFrames)."""
        return self.executor.store

    @property
    def executor(self) -> SegmentExecutor:
        if self._executor is None:
            self._executor = SegmentExecutor(build_store(seed=self.store_seed, n_customers=self.n_customers),
                                             self.schema)
        return self._executor

    def check_output(self, output: str) -> OutputCheck:
        """Parse and validate; ``attributes`` lists the attribute/function names used (also when invalid)."""
        try:
            node = parse(output)
        except ParseError as e:
            return OutputCheck(False, str(e), ())
        errs = validate(node, self.schema, text=output)
        return OutputCheck(not errs, str(errs[0]) if errs else None, subjects(node))

    def execute(self, output: str) -> frozenset:
        """Ids of the customers the query selects; raises :class:`DomainError` when it does not parse/validate."""
        if not isinstance(output, str):
            raise DomainError(f"a query must be a string, not {type(output).__name__}")
        return self.executor.run(output)

    def canonical(self, output: str) -> str:
        """The canonical text of a query that parses (raises :class:`ParseError` otherwise)."""
        return to_text(parse(output))

    def output_grammar(self) -> str:
        """GBNF rules (start ``query``) for the canonical queries that validate against this catalog."""
        from .ebnf import query_grammar

        return query_grammar(self.schema)

    def traffic_requests(self, *, seed: int, cycle: int, n: int, schedule=None) -> pd.DataFrame:
        """New simulated requests for a cycle, as the drift schedule says (a path or a loaded schedule; default
        ``params/drift/segments.yaml``); see ``traffic.py``."""
        from .traffic import traffic_requests

        return traffic_requests(self.catalog, seed=seed, cycle=cycle, n=n, schedule=schedule)

    def drift_slice(self, *, seed: int, upto: int, schedule=None, n_per_cycle: int = 200,
                    exclude=()) -> pd.DataFrame:
        """Held-out instances, labelled by the simulator's truth, of every drift scenario that appeared in the
        traffic of cycles ``1..upto`` (never a text of ``exclude``); see ``drift.py``."""
        from .drift import DriftSchedule, drift_slice, load_drift_schedule
        from .traffic import DEFAULT_SCHEDULE

        sched = schedule if isinstance(schedule, DriftSchedule) else load_drift_schedule(schedule or DEFAULT_SCHEDULE)
        return drift_slice(self.catalog, sched, seed=seed, upto=upto, n_per_cycle=n_per_cycle, exclude=exclude)

    def plant_requests(self, rows: pd.DataFrame, **kw) -> pd.DataFrame:
        """Plant off-topic, foreign-language and injection requests among ``rows``; see ``traffic.py``."""
        from .traffic import plant_requests

        return plant_requests(rows, **kw)

    def same_result(self, a: str, b: str) -> bool:
        """Whether two queries select the same customers (False when either is invalid)."""
        try:
            return self.execute(a) == self.execute(b)
        except DomainError:
            return False

    def generate(self, seed: int = 0, **sizes: int) -> dict[str, pd.DataFrame]:
        """Synthetic items; delegates to ``generator.generate(catalog, seed=..., **sizes)``."""
        from .generator import generate

        return generate(self.catalog, seed=seed, **sizes)
