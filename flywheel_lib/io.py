"""Small, careful file helpers: atomic writes and content hashes.

Every artifact is written to a temporary file beside its target and renamed into place, so a killed
process never leaves a half-written table, notebook or manifest behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["atomic_path", "write_json", "read_json", "write_table", "read_table", "file_sha256", "text_hash",
           "load_yaml_model"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``, on error remove it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp_path.is_dir():
                import shutil

                shutil.rmtree(tmp_path)
            else:
                tmp_path.unlink()
        raise


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    p = Path(path)
    if not p.exists():
        if default is not None:
            return default
        raise FileNotFoundError(f"{p} does not exist")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from e


def write_table(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    """Write a DataFrame as Parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"artifact {p} does not exist: run the stage that writes it first")
    return pd.read_parquet(p)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, or of every file under a folder (sorted by relative path)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def text_hash(*parts: Any, n: int = 16) -> str:
    """A short stable hash of some JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def load_yaml_model(path, model_cls, error_cls=ValueError, what: str = "file", **extra):
    """Read a YAML mapping into a pydantic model; every error names the file and the offending key.

    ``extra`` fields are passed to the model beside the file's own (e.g. where it was read from).
    """
    import yaml
    from pydantic import ValidationError

    from .paths import resolve_path

    p = resolve_path(path)
    if not p.exists():
        raise error_cls(f"{what} {path} does not exist (resolved to {p})")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise error_cls(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise error_cls(f"{p}: expected a mapping")
    try:
        return model_cls(**data, **extra)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise error_cls(f"{p}: {errs}") from None
