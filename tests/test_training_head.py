"""The decision head: it learns the refusal decision from sentence embeddings well enough to generalise to phrasing
families it never saw, saves and loads as plain arrays, and in the generator it decides while the decoder writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.training.head import ENCODER_FILE, HEAD_FILE, DecisionHead, encoder_file, fit_heads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("sentence_transformers")

SMALL = "smollm2-135m-2l"  # the head-and-decoder test needs a model that decodes, not one that knows the domain
TAX = load_taxonomy("params/taxonomy/segments.yaml")
REFUSAL_IDS = [c for c in TAX.ids if c != TAX.solvable_id]


@pytest.fixture(scope="module")
def data(dom):
    return dom.generate(seed=5, n_production=300, n_seed_solvable=200, n_seed_refusal=200, n_eval=100, n_conflicts=10)


@pytest.fixture(scope="module")
def head(data):
    seed = data["seed"]
    return DecisionHead(C=4.0).fit(seed["text"], seed["label"], solvable_id="solvable")


@pytest.fixture(scope="module")
def hybrid(data):
    seed = data["seed"]
    return DecisionHead(C=8.0, encoder="hybrid").fit(seed["text"], seed["label"], solvable_id="solvable")


def _rates(h, ev):
    pred = np.asarray(h.predict(ev["text"]), dtype=object)
    gold = ev["label"].to_numpy()
    imp = gold != "solvable"
    return float((pred[imp] == gold[imp]).mean()), float((pred[~imp] != "solvable").mean())


@pytest.mark.parametrize("which", ["head", "hybrid"])
def test_head_generalises_to_unseen_phrasing_families(data, which, request):
    h = request.getfixturevalue(which)
    recall, false_refusal = _rates(h, data["eval"])
    # A guesser that refuses at the seed's rate with a random category: recall ~0.5 * 0.25, false refusals ~0.5.
    assert recall >= 0.45, recall
    assert false_refusal <= 0.25, false_refusal
    assert set(h.classes_) == set(TAX.ids)


def test_hybrid_head_refuses_fewer_solvable_requests_than_the_embedding_alone(dom):
    """The n-grams see the words that tell a field the store has from one it lacks: on 400 eval items of unseen
    phrasing families the hybrid head refuses fewer solvable requests without losing right-category refusals."""
    d = dom.generate(seed=5, n_production=300, n_seed_solvable=200, n_seed_refusal=200, n_eval=400, n_conflicts=0)
    emb = DecisionHead(C=8.0).fit(d["seed"]["text"], d["seed"]["label"])
    hyb = DecisionHead(C=8.0, encoder="hybrid").fit(d["seed"]["text"], d["seed"]["label"])
    (r_emb, f_emb), (r_hyb, f_hyb) = _rates(emb, d["eval"]), _rates(hyb, d["eval"])
    assert f_hyb <= f_emb - 0.03 and r_hyb >= r_emb - 0.05, (r_emb, f_emb, r_hyb, f_hyb)
    assert hyb.ngrams_.n_features > 1000 and hyb.coef_.shape[1] == 384 + hyb.ngrams_.n_features


def test_one_class_never_refuses_and_save_load_roundtrip(tmp_path, data, head):
    prod = data["production"]
    only = DecisionHead().fit(prod["text"].head(40), ["solvable"] * 40)
    assert set(only.predict(data["eval"]["text"])) == {"solvable"}
    head.save(tmp_path)
    back = DecisionHead.load(tmp_path)
    texts = data["eval"]["text"].tolist()
    assert back.predict(texts) == head.predict(texts)
    np.testing.assert_allclose(back.predict_proba(texts), head.predict_proba(texts), rtol=1e-5)
    (tmp_path / HEAD_FILE).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=HEAD_FILE):
        DecisionHead.load(tmp_path)


def test_hybrid_head_save_load_roundtrip_keeps_the_ngrams(tmp_path, data, hybrid):
    hybrid.save(tmp_path)
    with np.load(tmp_path / HEAD_FILE, allow_pickle=False) as z:  # plain arrays, no pickle
        assert {"word_vocab", "char_vocab", "word_idf", "char_idf"} <= set(z.files)
    back = DecisionHead.load(tmp_path)
    texts = data["eval"]["text"].tolist()
    assert back.encoder == "hybrid" and back.predict(texts) == hybrid.predict(texts)
    np.testing.assert_allclose(back.predict_proba(texts), hybrid.predict_proba(texts), rtol=1e-5, atol=1e-6)
    with np.load(tmp_path / HEAD_FILE, allow_pickle=False) as z:  # a vocabulary that does not match the weights
        parts = {k: z[k] for k in z.files}
    parts["word_vocab"] = parts["word_vocab"][:-5]
    parts["word_idf"] = parts["word_idf"][:-5]
    np.savez(tmp_path / HEAD_FILE, **parts)
    with pytest.raises(ValueError, match="weight columns"):
        DecisionHead.load(tmp_path)


def test_binary_head_matches_sklearn(data):
    from sklearn.linear_model import LogisticRegression

    from flywheel_lib.embeddings import embed

    seed = data["seed"]
    y = np.where(seed["label"] == "solvable", "solvable", "wrong_skill")
    h = DecisionHead(C=2.0).fit(seed["text"], y)
    lr = LogisticRegression(C=2.0, max_iter=3000).fit(embed(seed["text"].tolist()), y)
    ev = data["eval"]["text"].tolist()
    ref = lr.predict_proba(embed(ev))
    np.testing.assert_allclose(h.predict_proba(ev), ref, atol=1e-4)


def test_sample_weights_weigh_the_rows(data):
    seed = data["seed"]
    ev = data["eval"]["text"].tolist()
    plain = DecisionHead(C=8.0, encoder="hybrid").fit(seed["text"], seed["label"])
    ones = DecisionHead(C=8.0, encoder="hybrid").fit(seed["text"], seed["label"], sample_weight=np.ones(len(seed)))
    np.testing.assert_allclose(ones.predict_proba(ev), plain.predict_proba(ev), atol=1e-6)
    heavy = np.where(seed["label"] == "solvable", 10.0, 1.0)  # solvable rows weigh more: fewer refusals
    solvable_heavy = DecisionHead(C=8.0, encoder="hybrid").fit(seed["text"], seed["label"], sample_weight=heavy)
    refused = lambda h: sum(y != "solvable" for y in h.predict(ev))  # noqa: E731
    assert refused(solvable_heavy) < refused(plain)
    with pytest.raises(ValueError, match="sample weights"):
        DecisionHead().fit(seed["text"], seed["label"], sample_weight=[1.0])


@pytest.fixture(scope="module")
def tuned(data):
    seed = data["seed"]
    return DecisionHead(encoder="finetuned", epochs=3, seed=3).fit(seed["text"], seed["label"], solvable_id="solvable")


def test_finetuned_head_learns_and_generalises_to_unseen_phrasing_families(data, tuned):
    """The encoder itself fine-tuned as the classifier: its training loss falls, and on the eval set's unseen
    phrasing families it refuses at least as well as the logistic-regression floor above."""
    first, last = np.mean(tuned.losses_[:5]), np.mean(tuned.losses_[-5:])
    assert last < 0.5 * first, (first, last)
    recall, false_refusal = _rates(tuned, data["eval"])
    assert recall >= 0.45 and false_refusal <= 0.25, (recall, false_refusal)
    assert set(tuned.classes_) == set(TAX.ids) and tuned.coef_.shape == (len(TAX.ids), 384)


def test_finetuned_head_saves_its_encoder_and_loads_to_the_same_scores(tmp_path, data, tuned):
    from flywheel_lib.embeddings import embed

    texts = data["eval"]["text"].tolist()
    tuned.save(tmp_path / "a")
    assert (tmp_path / "a" / ENCODER_FILE).stat().st_size > 10_000_000  # the whole encoder, in float16
    back = DecisionHead.load(tmp_path / "a")
    assert back.encoder == "finetuned" and back.tuned_ is not None
    np.testing.assert_array_equal(back.predict_proba(texts), tuned.predict_proba(texts))
    # a private copy: the shared sentence encoder (judges, retrieval) still gives the base model's vectors
    assert not np.allclose(tuned.tuned_.transform(texts[:8]), embed(texts[:8]), atol=1e-3)
    (tmp_path / "b").mkdir()
    DecisionHead.copy(tmp_path / "a", tmp_path / "b")  # what DPO does to carry the SFT model's head
    assert DecisionHead.load(tmp_path / "b").predict(texts) == tuned.predict(texts)
    (tmp_path / "b" / ENCODER_FILE).unlink()
    with pytest.raises(ValueError, match=ENCODER_FILE):
        DecisionHead.load(tmp_path / "b")
    with pytest.raises(ValueError, match="epochs > 0"):
        DecisionHead(encoder="finetuned", epochs=0)


def test_finetuned_ensemble_averages_members_of_consecutive_seeds_and_saves_each_encoder(tmp_path, data):
    """head_members: 2 fine-tunes two encoders (seeds s and s + 1) and averages their probabilities; each member is
    the single head of its seed, both encoders are saved, loaded, copied, and a missing one is named."""
    seed, texts = data["seed"].sample(64, random_state=0), data["eval"]["text"].tolist()  # 2 steps a member
    ens = DecisionHead(encoder="finetuned", epochs=1, seed=3, members=2).fit(seed["text"], seed["label"])
    second = DecisionHead(encoder="finetuned", epochs=1, seed=4).fit(seed["text"], seed["label"])
    parts = ens.member_proba(texts)
    assert len(parts) == 2 and len(ens.extra_) == 1
    np.testing.assert_allclose(parts[1], second.predict_proba(texts), atol=1e-5)  # member 2 is seed 4's head
    assert np.abs(parts[0] - parts[1]).max() > 0.01  # two SGD draws, not one head twice
    np.testing.assert_allclose(ens.predict_proba(texts), (parts[0] + parts[1]) / 2, atol=1e-6)
    ens.save(tmp_path / "a")
    assert (tmp_path / "a" / ENCODER_FILE).is_file() and (tmp_path / "a" / encoder_file(1)).is_file()
    back = DecisionHead.load(tmp_path / "a")
    assert back.members == 2 and back.summary()["members"] == 2
    np.testing.assert_array_equal(back.predict_proba(texts), ens.predict_proba(texts))
    (tmp_path / "b").mkdir()
    DecisionHead.copy(tmp_path / "a", tmp_path / "b")
    assert DecisionHead.load(tmp_path / "b").predict(texts) == ens.predict(texts)
    (tmp_path / "b" / encoder_file(1)).unlink()
    with pytest.raises(ValueError, match=encoder_file(1)):
        DecisionHead.load(tmp_path / "b")
    with pytest.raises(ValueError, match="members > 1 averages fine-tuned encoders"):
        DecisionHead(encoder="hybrid", members=2)
    with pytest.raises(ValueError, match="members must be a whole number"):
        DecisionHead(encoder="finetuned", members=0)


def test_fit_heads_checks_its_options(tmp_path):
    with pytest.raises(ValueError, match="decision_head must be one of"):
        fit_heads({}, "bert", {})
    with pytest.raises(ValueError, match="local-lora"):
        fit_heads({}, "minilm", {}, backend="openai")
    assert fit_heads({}, "none", {}) == {}
    with pytest.raises(ValueError, match="refusal_threshold"):
        DecisionHead(refusal_threshold=1.0)
    with pytest.raises(ValueError, match="logistic-regression head"):
        fit_heads({}, "finetuned", {}, max_false_refusal=0.1)
    with pytest.raises(ValueError, match="head_refusal_share"):
        fit_heads({}, "hybrid", {}, refusal_share=1.5)
    with pytest.raises(ValueError, match="head_members 2 averages fine-tuned encoders"):
        fit_heads({}, "hybrid", {}, members=2)


def test_fit_heads_learn_from_every_refusal_row_not_only_the_adapters_rows(tmp_path, data):
    """head_rows "all": the head fits on every refusal row of the variant's training split (solvable rows drawn to
    the share), not the adapter's few drawn rows, and refuses the eval set's unseen phrasings better for it."""
    from flywheel_lib.training import build_dataset
    from flywheel_lib.training.datasets import head_rows

    ds = build_dataset(data["seed"], taxonomy=TAX, val_frac=0.1, seed=3, max_refusal_share=0.35, n_train=40)
    folders = {"curated": tmp_path / "all", "small": tmp_path / "train"}
    out = {rows: fit_heads({"curated": ds}, "hybrid", {"curated": folders["curated" if rows == "all" else "small"]},
                           rows=rows, seed=3)["curated"] for rows in ("all", "train")}
    assert ds.target_refusal_share == 0.35  # the head's rows keep the share the adapter's rows were drawn to
    want = head_rows(ds.train_pool, refusal_share=0.35, seed=3)
    assert out["all"]["n_fit"] == len(want) > 4 * len(ds.train)
    assert out["all"]["n_fit_refusals"] == int((ds.train_pool["label"] != "solvable").sum())
    assert out["train"]["n_fit"] == len(ds.train) == 40
    rec_all, fr_all = _rates(DecisionHead.load(tmp_path / "all"), data["eval"])
    rec_train, _ = _rates(DecisionHead.load(tmp_path / "train"), data["eval"])
    assert rec_all >= rec_train + 0.1, (rec_all, rec_train)
    assert fr_all <= 0.25, fr_all
    with pytest.raises(ValueError, match="head_rows must be one of"):
        fit_heads({"curated": ds}, "hybrid", folders, rows="some")


@pytest.mark.slow
def test_generator_lets_the_head_decide_and_the_decoder_write(tmp_path, dom, data, tuned):
    """A LoRA adapter with a head (the demo's fine-tuned one, loaded from the adapter folder with its encoder):
    refused items carry the head's category, the rest are valid queries (the query-only grammar has no refusal
    branch); decide=False gives the decoder's own answers back."""
    head = tuned
    from peft import LoraConfig, get_peft_model

    from flywheel_lib.evaluation import VariantGenerator
    from flywheel_lib.evaluation.constrained import answer_grammar
    from flywheel_lib.models import load_base_model
    from flywheel_lib.training.targets import parse_answer

    model, _ = load_base_model(SMALL)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(tmp_path / "a")
    head.save(tmp_path / "a")
    gen = VariantGenerator(SMALL, {"a": str(tmp_path / "a")}, grammar=answer_grammar(dom, REFUSAL_IDS))
    assert list(gen.heads_) == ["a"]
    texts = data["eval"]["text"].tolist()[:24]
    # 05's budget (64 tokens): this untrained adapter sometimes spells a query in one-letter tokens ("A", "N", "D"),
    # and 40 tokens cut one such answer inside an enum value on one thread's arithmetic
    out = gen.generate(texts, variant="a", batch_size=12, max_new_tokens=64, progress=False)
    decided = gen.decisions_["a"]
    assert decided == head.predict(texts)
    assert any(d != "solvable" for d in decided) and any(d == "solvable" for d in decided)
    for d, text in zip(decided, out):
        ans = parse_answer(text, REFUSAL_IDS)
        if d == "solvable":
            assert not ans.refused and dom.check_output(ans.output).valid, repr(text)
        else:
            assert ans.refused and ans.refusal_category == d, text
    alone = gen.generate(texts, variant="a", batch_size=12, max_new_tokens=40, progress=False, decide=False)
    bare = VariantGenerator(SMALL, {"a": str(tmp_path / "a")}, heads=False,
                            grammar=answer_grammar(dom, REFUSAL_IDS))
    assert not bare.heads_
    assert alone == bare.generate(texts, variant="a", batch_size=12, max_new_tokens=40, progress=False)


@pytest.mark.slow
def test_zero_result_guard_turns_empty_segments_into_the_heads_refusal(tmp_path, dom, data, head):
    """With the guard, every query the head let through that runs and selects nobody, on a request the head gives
    a refusal at least the floor, becomes a refusal with the head's likeliest category; empty answers below the
    floor and every other answer stay the unguarded generator's, and ``unguarded`` gives them back."""
    from peft import LoraConfig, get_peft_model

    from flywheel_lib.evaluation import VariantGenerator
    from flywheel_lib.evaluation.constrained import answer_grammar
    from flywheel_lib.models import load_base_model
    from flywheel_lib.training.targets import parse_answer

    model, _ = load_base_model("smollm2-135m")
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(tmp_path / "a")
    head.save(tmp_path / "a")
    # A real executor over a tenth of the customers: a random adapter's queries then often select nobody.
    few = frozenset(sorted(dom.execute("number_of_orders >= 0"))[::10])

    def execute(q):
        return dom.execute(q) & few

    grammar = answer_grammar(dom, REFUSAL_IDS)
    texts = data["eval"]["text"].tolist()[:24]
    kw = dict(variant="a", batch_size=12, max_new_tokens=40, progress=False)
    plain = VariantGenerator("smollm2-135m", {"a": str(tmp_path / "a")}, grammar=grammar).generate(texts, **kw)
    with pytest.raises(ValueError, match="needs execute"):  # checked before any model loads
        VariantGenerator("no-such-model", {}, zero_result_floor=0.2)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        VariantGenerator("no-such-model", {}, execute=execute, zero_result_floor=1.5)
    _, p_refuse, best = head.decide(texts)
    empty = [i for i, a in enumerate(plain) if not parse_answer(a, REFUSAL_IDS).refused and len(execute(a)) == 0]
    floor = float(np.median(p_refuse[empty])) if empty else 0.0  # some empty answers above it, some below
    gen = VariantGenerator("smollm2-135m", {"a": str(tmp_path / "a")}, grammar=grammar, execute=execute,
                           zero_result_floor=floor)
    out = gen.generate(texts, **kw)
    expect = [i for i in empty if p_refuse[i] >= floor and best[i] != "solvable"]
    assert expect and len(expect) < len(empty), (len(expect), len(empty))
    assert sorted(gen.guarded_["a"]) == expect
    def same(a, b):  # a refusal's sentence may differ in its last tokens: its batch holds other rows now
        pa, pb = parse_answer(a, REFUSAL_IDS), parse_answer(b, REFUSAL_IDS)
        return (pa.refused and pb.refused and pa.refusal_category == pb.refusal_category) or a == b

    for i, (a, b) in enumerate(zip(plain, out)):
        if i in expect:
            ans = parse_answer(b, REFUSAL_IDS)
            assert ans.refused and ans.refusal_category == best[i], b
            assert gen.guarded_["a"][i] == a
        else:
            assert same(a, b), (a, b)
    back = gen.unguarded("a", out)
    assert all(back[i] == plain[i] for i in expect) and all(same(a, b) for a, b in zip(back, plain))


def test_threshold_calibration_holds_out_phrasing_clusters_and_meets_its_target(data):
    from flywheel_lib.training.head import THRESHOLD_GRID, calibrate_threshold

    seed = data["seed"]
    loose = calibrate_threshold(seed["text"], seed["label"], max_false_refusal=0.5)
    strict = calibrate_threshold(seed["text"], seed["label"], max_false_refusal=0.02)
    assert loose["met"] and loose["false_refusal_rate"] <= 0.5
    assert strict["threshold"] >= loose["threshold"]
    assert strict["false_refusal_rate"] <= 0.02 or (not strict["met"] and strict["threshold"] == THRESHOLD_GRID[-1])
    curve = strict["curve"]
    frr = [r["false_refusal_rate"] for r in curve]
    assert frr == sorted(frr, reverse=True)  # a higher threshold never refuses more solvable rows
    assert strict["refusal_recall"] <= loose["refusal_recall"]
