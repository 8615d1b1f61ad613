"""``executor: ray`` gives the tables ``executor: local`` gives: a small corpus judged both ways on a local Ray
instance (2 CPUs) by the offline panel and an OpenAI-compatible judge (a real local server), and conflict detection
with its embeddings computed in Ray actors. Also: the core imports without ray, openai or anthropic."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flywheel_lib import executors
from flywheel_lib.judges import load_panel
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_items, toy_seed
from flywheel_lib.testing.fault_server import FaultServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_core_imports_without_ray_openai_or_anthropic():
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("ray", "openai", "anthropic"):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        sys.meta_path.insert(0, Block())
        import flywheel_lib, flywheel_lib.judges, flywheel_lib.executors, flywheel_lib.judges.batch
        import flywheel_lib.testing.batch_server, flywheel_lib.curation.conflicts
        from flywheel_lib.executors import use_executor
        use_executor("local")
        try:
            use_executor("ray")
        except ImportError as e:
            assert "flywheel-workbench[ray]" in str(e), e
        else:
            raise SystemExit("use_executor('ray') did not fail without ray")
        assert not [m for m in sys.modules if m.split(".")[0] in ("ray", "openai", "anthropic")]
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_executor_choice_is_checked():
    with pytest.raises(ValueError, match="executor must be one of"):
        executors.use_executor("dask")
    with pytest.raises(ValueError, match="ray_address is set"):
        executors.use_executor("local", ray_address="ray://10.0.0.1:10001")
    assert executors.current().name == "local"


ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def local_ray():
    # On a busy 2-core machine a Ray worker can take over a minute to import; Ray's defaults give up sooner.
    for var, val in {"RAY_worker_register_timeout_seconds": "600", "RAY_agent_register_timeout_ms": "600000",
                     "RAY_raylet_start_wait_time_s": "600"}.items():
        os.environ.setdefault(var, val)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    executors.use_executor("local")


def _corpus(n_rep: int = 12) -> pd.DataFrame:
    base = toy_items()
    parts = [base.assign(item_id=base["item_id"] + f"-{k}", text=base["text"] + (f" in region {k}" if k else ""))
             for k in range(n_rep)]
    return pd.concat(parts, ignore_index=True)


def _panel_file(tmp_path, srv) -> str:
    cfg = yaml.safe_load(Path("params/judges/offline.yaml").read_text())
    cfg["judges"].append({"name": "vllm", "backend": "openai-compatible", "model": "m", "base_url": srv.url,
                          "options": {"timeout_s": 5, "max_tokens": 100},
                          "fewshot": {"strategy": "stratified", "per_category": 1},
                          "limits": {"concurrency": 8, "max_retries": 3, "backoff_base_s": 0.01}})
    p = tmp_path / "panel.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def test_ray_and_local_give_the_same_verdicts_and_cache(local_ray, tmp_path):
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    items = _corpus()
    with FaultServer(faults={"500": 0.05}) as srv:
        pan = load_panel(_panel_file(tmp_path, srv), taxonomy=tax).fit(toy_seed())
        executors.use_executor("local")
        local = pan.judge(items, cache_dir=tmp_path / "local", progress=False)
        n_local = srv.stats["requests"]
        executors.use_executor("ray", block_rows=32)
        try:
            far = pan.judge(items, cache_dir=tmp_path / "ray", progress=False)
            stats = pan.stats_.set_index("judge")
            again = pan.judge(items, cache_dir=tmp_path / "ray", progress=False)
        finally:
            executors.use_executor("local")
    assert len(items) > 32 * 2  # several blocks per judge
    cols = [c for c in local.columns if c != "latency_s"]
    pd.testing.assert_frame_equal(local[cols], far[cols])
    assert local["category"].notna().mean() > 0.5
    assert (stats["called"] == len(items)).all() and (stats["cached"] == 0).all()
    assert again["cached"].all()  # the driver wrote the cache as the local path does
    assert srv.stats["requests"] >= 2 * len(items) and n_local >= len(items)


def test_conflicts_with_ray_embeddings_match_local(local_ray):
    from flywheel_lib.curation.conflicts import find_conflicts
    from flywheel_lib.executors.ray_exec import RayEmbedder

    items = pd.DataFrame({
        "item_id": [f"p{i}" for i in range(6)] + [f"s{i}" for i in range(4)],
        "text": ["customers who spent over $1000", "customers younger than 25", "buyers who spent more than $1000",
                 "what is my conversion rate", "customers tagged vip", "clients younger than 25 years",
                 "customers who spent over 1000 dollars", "customers younger than 25 years old",
                 "show my conversion rate", "vip customers"],
        "source": ["production"] * 6 + ["seed"] * 4,
        "label": ["solvable"] * 6 + ["missing_capability", "missing_capability", "wrong_skill", "solvable"],
    })
    local = find_conflicts(items, similarity_threshold=0.8)
    far = find_conflicts(items, similarity_threshold=0.8,
                         embedder=RayEmbedder(executors.Executor("ray", "", block_rows=3)))
    assert len(local) >= 2
    pd.testing.assert_frame_equal(local.drop(columns="similarity"), far.drop(columns="similarity"))
    assert (local["similarity"] - far["similarity"]).abs().max() < 1e-4
