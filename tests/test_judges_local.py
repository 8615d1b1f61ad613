"""Real small models: the local SmolLM2 judge in-process, and the openai path against a real OpenAI-compatible
server on 127.0.0.1 serving SmolLM2 (flywheel_lib/testing/model_server.py). SmolLM2-135M is weak: these tests
check that every verdict is parseable or an explicit abstention, not that it is right."""

import pytest
import yaml

from flywheel_lib.judges import load_panel
from flywheel_lib.records import check_table
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_items, toy_seed

pytestmark = pytest.mark.slow
IDS = ["solvable", "needs_context", "missing_capability", "wrong_skill", "ambiguous"]


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/segments.yaml")


def test_local_judge_gives_constrained_verdicts(tax, tmp_path):
    panel = load_panel("params/judges/offline_llm.yaml", taxonomy=tax).fit(toy_seed())
    local = panel.without(["knn", "linear", "rules"])
    items = toy_items().iloc[:3]
    v = local.judge(items, cache_dir=tmp_path, progress=False)
    check_table(v, "verdicts")
    assert v.category.isin(IDS).all() and v.error.isna().all()
    pool_keys = set(toy_seed().reason_key)
    assert set(v.reason_key) <= pool_keys  # reasons chosen among the pool's keys of the chosen category
    assert (v.tokens_in > 500).all() and (v.cost_usd == 0).all()
    again = local.judge(items, cache_dir=tmp_path, progress=False)
    assert again.cached.all() and again.category.tolist() == v.category.tolist()


@pytest.fixture(scope="module")
def server():
    from flywheel_lib.testing.model_server import ModelServer

    with ModelServer() as srv:
        yield srv


@pytest.mark.parametrize("response_format", ["json_schema", "none"])
def test_openai_path_against_a_real_model_server(tax, tmp_path, server, response_format):
    cfg = {"name": "real", "judges": [{
        "name": "smol", "backend": "openai-compatible", "model": "smollm2-135m", "base_url": server.url,
        "options": {"max_tokens": 48, "timeout_s": 120}, "fewshot": {"strategy": "stratified", "per_category": 1},
        "limits": {"concurrency": 2, "max_retries": 1}, "params": {"response_format": response_format},
        "prices": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    panel = load_panel(tmp_path / "p.yaml", taxonomy=tax).fit(toy_seed())
    items = toy_items().iloc[[0, 4]]
    before = server.stats["requests"]
    v = panel.judge(items, cache_dir=tmp_path / "c", progress=False)
    assert server.stats["requests"] - before == 2
    assert (v.category.notna() ^ v.error.notna()).all()
    assert (v.tokens_in > 300).all() and (v.tokens_out > 0).all() and (v.cost_usd > 0).all()
    if response_format == "json_schema":  # the server constrains the answer: every verdict parses
        assert v.category.isin(IDS).all()
    else:  # free text from a 135M model: a verdict when it wrote one, else an abstention saying why
        assert v.loc[v.category.isna(), "error"].str.startswith("unparseable verdict").all()
    again = panel.judge(items, cache_dir=tmp_path / "c", progress=False)
    assert again.cached.all() and server.stats["requests"] - before == 2
