"""The generation memo: answers kept per adapter digest, decoding mode and prompt, and its artifact round trip."""

from __future__ import annotations

import pandas as pd
import pytest

from flywheel_lib.evaluation.memo import MEMO_COLUMNS, GenerationMemo, adapter_digest


def _adapter(folder, weights: bytes):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_the_digest_names_the_weights_not_the_folder(tmp_path):
    a = _adapter(tmp_path / "run1" / "curated", b"w1")
    same = _adapter(tmp_path / "run2" / "deployed", b"w1")
    other = _adapter(tmp_path / "run2" / "curated", b"w2")
    assert adapter_digest("smollm2-135m", a) == adapter_digest("smollm2-135m", same)
    assert adapter_digest("smollm2-135m", a) != adapter_digest("smollm2-135m", other)
    assert adapter_digest("smollm2-135m", a) != adapter_digest("gemma3-270m", a)
    assert adapter_digest("smollm2-135m", None) != adapter_digest("smollm2-135m", a)
    with pytest.raises(FileNotFoundError, match="adapter_model"):
        adapter_digest("smollm2-135m", tmp_path)


def test_a_kept_answer_is_found_only_under_its_adapter_and_mode():
    memo = GenerationMemo()
    q64, q32 = GenerationMemo.mode("root ::= x", 64), GenerationMemo.mode("root ::= x", 32)
    assert GenerationMemo.mode(None, 64) != q64 and q64 != GenerationMemo.mode("root ::= y", 64)
    memo.keep("A", q64, ["p1", "p2"], ["amount_spent > 5", "REFUSE ambiguous: which?"])
    found, todo = memo.lookup("A", q64, ["p2", "p3", "p1"])
    assert found == {0: "REFUSE ambiguous: which?", 2: "amount_spent > 5"} and todo == [1]
    assert memo.lookup("B", q64, ["p1"]) == ({}, [0])
    assert memo.lookup("A", q32, ["p1"]) == ({}, [0])
    assert (memo.reused, memo.decoded) == (2, 2)
    with pytest.raises(ValueError):
        memo.keep("A", q64, ["p4"], [])


def test_the_artifact_round_trips_and_holds_only_what_a_run_used(tmp_path):
    earlier = GenerationMemo()
    earlier.keep("A", "m", ["p1", "p2"], ["a1", "a2"])
    path = tmp_path / "generations.parquet"
    earlier.frame().to_parquet(path)
    later = GenerationMemo(pd.read_parquet(path))
    assert len(later) == 2 and later.frame().empty           # loaded, not yet used by this run
    found, todo = later.lookup("A", "m", ["p2", "p9"])
    later.keep("A", "m", ["p9"], ["a9"])
    kept = later.frame()
    assert list(kept.columns) == MEMO_COLUMNS and set(kept["answer"]) == {"a2", "a9"}
    assert set(later.frame(used_only=False)["answer"]) == {"a1", "a2", "a9"}
    assert "p2" not in set(kept["prompt"])                   # prompts are kept as digests
    with pytest.raises(ValueError, match="run r1: generations.*missing columns"):
        GenerationMemo().add_frame(pd.DataFrame({"adapter": ["A"]}), source="run r1: generations")
