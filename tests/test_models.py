"""Base-model loading: built-in names convert once into the cache, HF folders load as is, bad names fail clearly."""

from __future__ import annotations

import os

import pytest

from flywheel_lib.models import BUILTIN_MODELS, DERIVED_MODELS, load_base_model, model_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_unknown_name_is_a_clear_error():
    with pytest.raises(KeyError, match="neither a folder nor a built-in name"):
        model_dir("no-such-model-xyz")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        model_dir(str(tmp_path))


def test_builtin_names():
    assert set(BUILTIN_MODELS) >= {"smollm2-135m", "gemma3-270m"}
    assert DERIVED_MODELS["smollm2-135m-2l"] == ("smollm2-135m", 2)


@pytest.mark.slow
def test_the_cut_model_keeps_the_first_layers_and_the_tokenizer_of_its_source():
    import torch

    small, tok = load_base_model("smollm2-135m-2l")
    full, full_tok = load_base_model("smollm2-135m")
    assert small.config.num_hidden_layers == 2 and len(small.model.layers) == 2
    assert tok.get_vocab() == full_tok.get_vocab() and tok.chat_template == full_tok.chat_template
    for name in ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight"):
        assert torch.equal(small.state_dict()[name], full.state_dict()[name]), name
    assert (model_dir("smollm2-135m-2l") / "SOURCE").read_text().startswith("the first 2 decoder layers")


@pytest.mark.slow
def test_smollm2_loads_from_cache_and_as_a_folder():
    import torch

    model, tok = load_base_model("smollm2-135m")
    folder = model_dir("smollm2-135m")
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    assert tok.pad_token is not None and tok.padding_side == "left"
    assert tok.chat_template  # SmolLM2-Instruct ships one
    n = sum(p.numel() for p in model.parameters())
    assert 130e6 < n < 140e6
    # The converted folder is an ordinary HF folder: loading it by path gives the same weights.
    model2, _ = load_base_model(str(folder), dtype="bfloat16")
    assert next(model2.parameters()).dtype == torch.bfloat16
    w1 = model.get_input_embeddings().weight[:3, :4].float()
    w2 = model2.get_input_embeddings().weight[:3, :4].float()
    assert torch.allclose(w1, w2, atol=1e-2)
    # The dequantized model is a real language model: greedy decoding answers a trivial prompt.
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
    assert "4" in tok.decode(out[0, ids["input_ids"].shape[1]:])


def test_free_cores_counts_idle_time_not_the_load_average():
    """Two /proc/stat readings 100 jiffies apart: 25 idle of 100 on 2 cores is half a core free."""
    from flywheel_lib.threads import cpu_times, free_cores, set_threads

    stats = iter(["cpu  300 0 100 1000 0 0 0 0 0 0\n", "cpu  360 0 115 1020 5 0 0 0 0 0\n"])
    assert free_cores(0.0, reader=lambda: cpu_times(next(stats)), cores=2) == 0.5
    quiet = iter(["cpu  300 0 100 1000 0 0 0 0 0 0\n", "cpu  300 0 100 1100 0 0 0 0 0 0\n"])
    assert free_cores(0.0, reader=lambda: cpu_times(next(quiet)), cores=2) == 2.0
    assert cpu_times("garbage") is None and cpu_times("cpu 1 2\n") is None
    import torch

    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_flywheel_max_threads_caps_auto_and_asked_counts(monkeypatch):
    """make test runs two test processes on two cores, each capped at one thread: the cap binds the auto count and
    an explicit one; a bad value is an error that names the variable."""
    import torch

    from flywheel_lib.threads import max_threads, set_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("FLYWHEEL_MAX_THREADS", "1")
        assert max_threads() == 1
        assert set_threads(0) == 1 and torch.get_num_threads() == 1
        assert set_threads(2) == 1
        monkeypatch.setenv("FLYWHEEL_MAX_THREADS", "2")
        assert set_threads(1) == 1 and set_threads(5) == 2
        monkeypatch.delenv("FLYWHEEL_MAX_THREADS")
        assert max_threads() is None and set_threads(1) == 1
        for bad in ("0", "two"):
            monkeypatch.setenv("FLYWHEEL_MAX_THREADS", bad)
            with pytest.raises(ValueError, match="FLYWHEEL_MAX_THREADS"):
                set_threads(0)
    finally:
        torch.set_num_threads(before)
