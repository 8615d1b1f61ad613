"""Committed stage notebooks: no outputs, a tagged parameters cell of typed, documented literals."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_stage_has_a_notebook():
    names = {p.stem for p in NOTEBOOKS}
    for stage in ("00_data", "01_calibrate", "02_judge", "03_resolve", "04_finetune", "05_evaluate", "06_flywheel"):
        assert stage in names, f"notebooks/{stage}.ipynb is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterized(path):
    nb = json.loads(path.read_text())
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] == "code":
            assert not c.get("outputs"), f"{path.name} cell {i} is committed with outputs"
            assert c.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{path.name}: expected one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    tree = ast.parse(src)
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign), f"{path.name}: parameters cell line {node.lineno} is not `name: type = literal`"
        ast.literal_eval(node.value)  # literals only
        names.add(node.target.id)
    for lineno, line in enumerate(src.splitlines(), 1):
        if line.strip() and not line.strip().startswith("#"):
            assert "#" in line, f"{path.name}: parameter on line {lineno} has no help comment"
    assert "run_dir" in names, f"{path.name}: no run_dir parameter"
    # papermill must see every parameter (it skips a line holding a second '=', e.g. in the help comment)
    import papermill

    seen = set(papermill.inspect_notebook(str(path)))
    assert seen == names, f"{path.name}: papermill cannot parse {sorted(names - seen)} (a '=' in the comment?)"


def test_committed_notebooks_are_what_the_git_filter_would_commit():
    """The nbstripout filter (`make` configures it with --keep-id) must leave every committed notebook as it is;
    otherwise a fresh clone reads as modified and every run's manifest says dirty."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("nbstripout", path=str(Path(sys.executable).parent))
    assert exe, "nbstripout is not installed next to this Python (the dev extra installs it)"
    makefile = (ROOT / "Makefile").read_text()
    assert "nbstripout --keep-id" in makefile and "notebooks/*.ipynb filter=nbstripout" in (ROOT / ".gitattributes").read_text()
    for path in NOTEBOOKS:
        out = subprocess.run([exe, "--keep-id"], input=path.read_bytes(), capture_output=True, check=True).stdout
        assert out == path.read_bytes(), f"{path.name} changes under `nbstripout --keep-id`: commit it stripped"
