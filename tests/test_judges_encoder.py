"""The encoder judge (MiniLM fine-tuned as a sequence classifier) learns a toy separable task and caches its fit."""

import pandas as pd
import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.judges import JudgeConfig, make_judge

pytestmark = pytest.mark.slow

SOLV = ["customers in {} who spent over 100", "shoppers from {} with more than 2 orders",
        "buyers located in {} who ordered recently twice"]
SKILL = ["write a poem about {}", "what is the capital of {}", "tell me a joke about {}"]
PLACES = ["Chicago", "Boston", "Denver", "Austin", "Seattle", "Miami", "Dallas", "Portland"]


def _items(places, start):
    rows = [(t.format(p), "solvable") for p in places for t in SOLV] + [(t.format(p), "wrong_skill") for p in places
                                                                          for t in SKILL]
    return pd.DataFrame({"item_id": [f"e{start + i}" for i in range(len(rows))], "text": [r[0] for r in rows],
                         "label": [r[1] for r in rows], "reason_key": None, "context": ""})


def test_encoder_learns_a_separable_task_and_reuses_its_cached_fit(tmp_path):
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    cfg = JudgeConfig(name="enc", backend="encoder",
                      params={"epochs": 4, "batch_size": 8, "max_length": 32, "cache_dir": str(tmp_path)})
    train, test = _items(PLACES[:5], 0), _items(PLACES[5:], 100)
    judge = make_judge(cfg, taxonomy=tax).fit(train)
    assert judge.loaded_from_cache_ is False and len(list(tmp_path.glob("*.pt"))) == 1
    v = judge.predict(test)
    acc = sum(x.category == g for x, g in zip(v, test["label"])) / len(test)
    assert acc >= 0.9
    again = make_judge(cfg, taxonomy=tax).fit(train)
    assert again.loaded_from_cache_ is True
    assert [x.category for x in again.predict(test)] == [x.category for x in v]
