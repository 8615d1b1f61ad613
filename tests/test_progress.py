"""Live progress: a bar inside a stage reports to the runner's progress file, and the tail prints it."""

from __future__ import annotations

import json

from flywheel_lib.progress import PROGRESS_ENV, ProgressTail, format_progress, progress_bar


def test_channel_bar_writes_lines_and_the_tail_echoes_them(tmp_path, monkeypatch):
    path = tmp_path / "progress" / "04_finetune.jsonl"
    printed: list[str] = []
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    with ProgressTail(path, echo=printed.append, every=0.0, poll=0.01) as tail:
        bar = progress_bar(total=3, desc="lora curated", mininterval=0)
        for step in range(3):
            bar.set_postfix(loss=f"{1.0 / (step + 1):.2f}", refresh=False)
            bar.update(1)
        bar.close()
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert recs[-1]["n"] == 3 and recs[-1]["total"] == 3 and recs[-1]["desc"] == "lora curated"
    assert "loss=0.33" in recs[-1]["postfix"]
    assert printed and printed[-1].startswith("  … lora curated  3/3 (100%)  loss=0.33")
    assert tail.last.startswith("lora curated  3/3")


def test_without_the_runner_the_bar_is_plain_tqdm(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    bar = progress_bar(total=2, desc="x", disable=True)
    bar.update(2)
    bar.close()
    assert not list(tmp_path.iterdir())


def test_format_progress_estimates_time_left():
    line = format_progress({"desc": "generate curated", "n": 10, "total": 40, "elapsed": 20.0, "rate": 0.5,
                            "postfix": ""})
    assert line == "generate curated  10/40 (25%)  0:20 elapsed, ~1:00 left"
