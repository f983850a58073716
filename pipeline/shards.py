"""Shard folders: the on-disk unit every stage writes (docs/design.md#a-build-on-disk).

    DIR/data/*.arrow       kept records (Arrow IPC stream, SCHEMA)
    DIR/rejected/*.arrow   dropped records with stage and reason (REJECTED_SCHEMA)
    DIR/manifest.json      counts in / kept / dropped by reason, config, versions, seed
    DIR/_SUCCESS           written last; a folder without it is unfinished
    DIR/.work/*.json       per-task completion markers, so a resumed stage skips finished tasks

Every file becomes visible only when complete: written to a temp name, fsynced, renamed.
`datasets.load_dataset("arrow", data_files="DIR/data/*.arrow")` reads the data folder.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
from typing import Iterable, Iterator

import pyarrow as pa

from .config import ConfigError
from .schema import REJECTED_SCHEMA, SCHEMA, SCHEMA_VERSION

SUCCESS = "_SUCCESS"

# Fault injection for the resume tests: SIGKILL this process right after the N-th file it
# makes visible. Unset in normal use.
_KILL_AFTER = int(os.environ.get("TURNFORGE_KILL_AFTER_FILES", "0") or 0)
_made_visible = 0


def _maybe_die() -> None:
    global _made_visible
    if _KILL_AFTER:
        _made_visible += 1
        if _made_visible >= _KILL_AFTER:
            os.kill(os.getpid(), 9)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"  # per process: two attempts of one task never share a temp file
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")
    _maybe_die()


def publish_dir(tmp: str, path: str) -> None:
    """Make a folder written under `tmp` visible as `path` in one rename (a folder a killed
    attempt left at `path` is replaced)."""
    import shutil

    for f in os.listdir(tmp):
        with open(os.path.join(tmp, f), "rb") as fh:
            os.fsync(fh.fileno())
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))
    _maybe_die()


def atomic_write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode())


class PartWriter:
    """One Arrow IPC stream file, visible under its final name only after close()."""

    def __init__(self, path: str, schema: pa.Schema, mode: int | None = None):
        self.path, self.tmp = path, f"{path}.{os.getpid()}.tmp"
        self._f = open(self.tmp, "wb")
        if mode is not None:
            os.chmod(self.tmp, mode)
        self._w = pa.ipc.new_stream(self._f, schema)
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._w.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> None:
        self._w.close()
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.tmp, self.path)
        _fsync_dir(os.path.dirname(self.path))
        _maybe_die()


class RollingWriter:
    """Writes batches to `DIR/<prefix>-NNNNN.arrow`, starting a new part every
    `rows_per_part` rows (or to one `DIR/<prefix>.arrow` when rows_per_part is None); part
    names depend only on the data, so output is deterministic."""

    def __init__(self, folder: str, prefix: str, schema: pa.Schema, rows_per_part: int | None,
                 mode: int | None = None):
        self.folder, self.prefix, self.schema = folder, prefix, schema
        self.rows_per_part, self.mode = rows_per_part, mode
        self._w: PartWriter | None = None
        self.parts: list[str] = []
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        start = 0
        while start < batch.num_rows:
            if self._w is None:
                name = (self.prefix if self.rows_per_part is None
                        else f"{self.prefix}-{len(self.parts):05d}")
                self._w = PartWriter(os.path.join(self.folder, name + ".arrow"), self.schema, self.mode)
            room = batch.num_rows - start
            if self.rows_per_part is not None:
                room = min(room, self.rows_per_part - self._w.rows)
            self._w.write(batch.slice(start, room))
            start += room
            self.rows += room
            if self.rows_per_part is not None and self._w.rows >= self.rows_per_part:
                self._close_part()

    def _close_part(self) -> None:
        assert self._w is not None
        self._w.close()
        self.parts.append(os.path.basename(self._w.path))
        self._w = None

    def close(self) -> list[str]:
        if self._w is not None:
            self._close_part()
        return self.parts


def prepare(folder: str, owner_only: bool = False) -> None:
    """Create the folder layout and delete temp files a killed run left behind. An owner-only
    folder (and its sub-folders) is 0700 even when a run resumes one made before."""
    for sub in ("data", "rejected", ".work"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        if owner_only:
            os.chmod(os.path.join(folder, sub), 0o700)
    if owner_only:
        os.chmod(folder, 0o700)
    for tmp in glob.glob(os.path.join(folder, "**", "*.tmp"), recursive=True):
        os.remove(tmp)


@contextlib.contextmanager
def owner_only(on: bool = True) -> Iterator[None]:
    """While on, every file and folder this process makes is 0600 / 0700 (umask 077), with no
    window in which another user could open it: for data that may hold raw personal data."""
    if not on:
        yield
        return
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def is_owner_only(folder: str) -> bool:
    return os.stat(folder).st_mode & 0o077 == 0


def holds_raw_personal_data(folder: str | None) -> bool:
    """What a shard folder's manifest says; a folder that does not say (or none) may (fail closed)."""
    try:
        return bool(load_manifest(folder).get("raw_personal_data", True))
    except (OSError, TypeError, ValueError):
        return True


def is_complete(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, SUCCESS))


def mark_complete(folder: str, manifest: dict) -> None:
    atomic_write_json(os.path.join(folder, "manifest.json"), manifest)
    atomic_write_bytes(os.path.join(folder, SUCCESS), b"")


def data_files(folder: str, sub: str = "data") -> list[str]:
    return sorted(glob.glob(os.path.join(folder, sub, "*.arrow")))


def read_table(path: str) -> pa.Table:
    with pa.memory_map(path) as src:
        return pa.ipc.open_stream(src).read_all()


def iter_batches(folder: str, sub: str = "data") -> Iterator[pa.RecordBatch]:
    """Stream the record batches of a shard folder, part by part."""
    for p in data_files(folder, sub):
        yield from iter_batches_of(p)


def iter_batches_of(path: str) -> Iterator[pa.RecordBatch]:
    # Plain reads, not a memory map: each batch is freed after use, so resident memory
    # stays at one batch however large the part is.
    with pa.OSFile(path, "rb") as src:
        yield from pa.ipc.open_stream(src)


def iter_records(folder: str, sub: str = "data") -> Iterator[dict]:
    for b in iter_batches(folder, sub):
        yield from b.to_pylist()


def versions() -> dict:
    """What made a folder: stamped into every manifest."""
    import platform

    import numpy

    from . import __version__
    return {"turnforge": __version__, "python": platform.python_version(), "pyarrow": pa.__version__,
            "numpy": numpy.__version__, "schema": SCHEMA_VERSION}


def file_identity(path: str, edge: int = 1 << 16) -> list:
    """[size, mtime_ns, digest of the first and last 64 KB]: cheap at any size, and it changes
    when lines are appended, truncated or the file is rewritten."""
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(edge))
        if st.st_size > edge:
            f.seek(max(edge, st.st_size - edge))
            h.update(f.read(edge))
    return [st.st_size, st.st_mtime_ns, h.hexdigest()[:16]]


def folder_identity(folder: str | None) -> dict:
    """A finished shard folder is identified by its manifest's fingerprint, which holds its own
    input's identity in turn."""
    try:
        return {"folder_fingerprint": load_manifest(folder).get("fingerprint")}
    except (OSError, TypeError, ValueError):
        return {}


def load_manifest(folder: str) -> dict:
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def shard_folder(path: str) -> str:
    """The shard folder a command reads at `path`: the folder itself, or a build's last stage.
    Anything else is an error naming the path, so a typo never reads as an empty folder."""
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such folder")
    if os.path.isdir(os.path.join(path, "data")):
        return path
    if os.path.exists(os.path.join(path, "manifest.json")) and load_manifest(path).get("last_stage"):
        return os.path.join(path, load_manifest(path)["last_stage"])
    hint = "give a stage folder (OUT/stages/NN-name) or a finished build's OUT"
    stages = sorted(glob.glob(os.path.join(path, "stages", "*", "")))
    if stages:  # a build that has not finished yet: no OUT/manifest.json, but its stage folders
        hint = f"this build has not finished; give one of its stage folders, e.g. {stages[-1].rstrip(os.sep)}"
    raise ConfigError(f"{path}: not a shard folder (no data/) nor a build folder (no manifest.json); {hint}")


def count_rows(paths: Iterable[str]) -> int:
    n = 0
    for p in paths:
        with pa.memory_map(p) as src:
            for b in pa.ipc.open_stream(src):
                n += b.num_rows
    return n


def schema_for(sub: str) -> pa.Schema:
    return SCHEMA if sub == "data" else REJECTED_SCHEMA
