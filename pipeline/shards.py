"""Shard folders: the on-disk unit every stage writes (docs/design.md#a-build-on-disk).

    DIR/data/*.arrow       kept records (Arrow IPC stream, SCHEMA)
    DIR/rejected/*.arrow   dropped records with stage and reason (REJECTED_SCHEMA)
    DIR/manifest.json      counts in / kept / dropped by reason, config, versions, seed, and
                           `parts`: every part's rows, bytes and xxh3_64 hash
    DIR/_SUCCESS           written last; a folder without it is unfinished
    DIR/.work/*.json       per-task completion markers, so a resumed stage skips finished tasks
    DIR/.work/parts/       what each part's writer measured (rows, bytes, hash) for the manifest

Every file becomes visible only when complete: written to a temp name unique to its writer,
fsynced, renamed. Readers check each part against the manifest (docs/integrity.md).
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

from . import integrity
from .config import ConfigError
from .integrity import HASH, temp_name
from .schema import REJECTED_SCHEMA, SCHEMA, SCHEMA_VERSION

SUCCESS = "_SUCCESS"
SUBS = ("data", "rejected")

_fsync_dir = integrity.fsync_dir


def _maybe_die() -> None:
    integrity.file_op(visible=True)


class PartMismatch(ConfigError):
    """A part differs from what its folder's manifest says it holds."""


def atomic_write_bytes(path: str, data: bytes, what: str = "") -> None:
    tmp = temp_name(path)  # per writer: two processes never share (nor delete) a temp file
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        integrity.remove_quietly(tmp)
        raise integrity.write_error(e, path, what) from e
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


def atomic_write_json(path: str, obj, what: str = "") -> None:
    atomic_write_bytes(path, (json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode(), what)


def _sidecar(path: str) -> str | None:
    """Where the writer of part `DIR/<sub>/<name>.arrow` records what it wrote:
    `DIR/.work/parts/<sub>/<name>.json` (None for files outside a shard folder's data/rejected)."""
    sub_dir = os.path.dirname(os.path.abspath(path))
    sub, folder = os.path.basename(sub_dir), os.path.dirname(sub_dir)
    if sub not in SUBS or not os.path.isdir(os.path.join(folder, ".work")):
        return None
    return os.path.join(folder, ".work", "parts", sub, os.path.basename(path)[:-len(".arrow")] + ".json")


class PartWriter:
    """One Arrow IPC stream file, visible under its final name only after close(). Its rows,
    bytes and hash are measured while writing (no second read) and recorded next to the
    folder's task markers for the manifest. A failed write removes its temp file and names
    the file (disk full, permission denied)."""

    def __init__(self, path: str, schema: pa.Schema, mode: int | None = None, what: str = ""):
        self.path, self.tmp, self.what = path, temp_name(path), what
        try:
            self._f = open(self.tmp, "wb")
            if mode is not None:
                os.chmod(self.tmp, mode)
            self._sink = integrity.HashingSink(self._f)
            self._w = pa.ipc.new_stream(self._sink, schema)
        except OSError as e:
            self.abort()
            raise integrity.write_error(e, path, what) from e
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            try:
                self._w.write_batch(batch)
            except OSError as e:
                self.abort()
                raise integrity.write_error(e, self.path, self.what) from e
            self.rows += batch.num_rows

    def abort(self) -> None:
        """Drop the part being written (on an error): its temp file must not fill the disk."""
        with contextlib.suppress(Exception):
            self._f.close()
        integrity.remove_quietly(self.tmp)

    def close(self) -> None:
        try:
            self._w.close()
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            st = os.stat(self.tmp)
            info = {"rows": self.rows, "bytes": st.st_size, HASH: self._sink.h.hexdigest(), "mtime_ns": st.st_mtime_ns}
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            raise integrity.write_error(e, self.path, self.what) from e
        _fsync_dir(os.path.dirname(self.path))
        _maybe_die()
        side = _sidecar(self.path)
        if side:  # not fsynced: a lost or torn one is recomputed from the part (part_info)
            os.makedirs(os.path.dirname(side), exist_ok=True)
            tmp = temp_name(side)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(info, f)
            os.replace(tmp, side)
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

    def abort(self) -> None:
        if self._w is not None:
            self._w.abort()
            self._w = None


def prepare(folder: str, owner_only: bool = False) -> None:
    """Create the folder layout and delete temp files a killed run left behind. An owner-only
    folder (and its sub-folders) is 0700 even when a run resumes one made before."""
    for sub in ("data", "rejected", ".work"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        if owner_only:
            os.chmod(os.path.join(folder, sub), 0o700)
    if owner_only:
        os.chmod(folder, 0o700)
    for tmp in glob.glob(os.path.join(folder, "**", "*.tmp"), recursive=True):  # files and folders
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
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


def mark_complete(folder: str, manifest: dict) -> dict:
    """Write the manifest and then _SUCCESS. Every part's rows, bytes and hash are added to
    `manifest` under `parts` (in place, so what a caller returns equals what a later run
    loads) unless the caller set them; returns it."""
    if "parts" not in manifest:
        manifest["parts"] = parts_info(folder)
    atomic_write_json(os.path.join(folder, "manifest.json"), manifest)
    atomic_write_bytes(os.path.join(folder, SUCCESS), b"")
    return manifest


def data_files(folder: str, sub: str = "data") -> list[str]:
    return sorted(glob.glob(os.path.join(folder, sub, "*.arrow")))


def part_info(path: str) -> dict:
    """rows, bytes and hash of one part: what its writer recorded when that still matches the
    file (size and mtime), else measured from the file."""
    st = os.stat(path)
    side = _sidecar(path)
    if side and os.path.exists(side):
        try:
            with open(side, encoding="utf-8") as f:
                info = json.load(f)
            if info.get("bytes") == st.st_size and info.get("mtime_ns") == st.st_mtime_ns:
                return {"rows": info["rows"], "bytes": info["bytes"], HASH: info[HASH]}
        except (OSError, ValueError, KeyError):
            pass
    return {"rows": count_rows([path]), "bytes": st.st_size, HASH: integrity.hash_file(path)}


def parts_info(folder: str, subs: Iterable[str] = SUBS) -> dict:
    """{"data/part-00000.arrow": {rows, bytes, xxh3_64}, ...} for the manifest's `parts`."""
    return {os.path.relpath(p, folder): part_info(p) for sub in subs for p in data_files(folder, sub)}


def check_parts(folder: str, subs: Iterable[str] = SUBS, deep: bool = False) -> list[str]:
    """What differs between a folder's parts and its manifest's `parts`: a part missing, one
    the manifest does not list, another size, and with `deep` another hash. Each line names
    the part's path. A folder whose manifest has no `parts` (unfinished, or written by an
    older turnforge) has nothing to check against: []."""
    try:
        listed = load_manifest(folder).get("parts")
    except (OSError, ValueError):
        return []
    if not isinstance(listed, dict):
        return []
    problems = []
    for sub in subs:
        want = {k: v for k, v in listed.items() if k.split("/", 1)[0] == sub}
        have = {os.path.relpath(p, folder): p for p in data_files(folder, sub)}
        for rel in sorted(set(want) - set(have)):
            problems.append(f"{os.path.join(folder, rel)}: missing (the manifest lists it with "
                            f"{want[rel]['rows']} rows)")
        for rel in sorted(set(have) - set(want)):
            problems.append(f"{have[rel]}: not in the manifest (a stray part)")
        for rel in sorted(set(want) & set(have)):
            size = os.path.getsize(have[rel])
            if size != want[rel]["bytes"]:
                problems.append(f"{have[rel]}: {size} bytes, the manifest says {want[rel]['bytes']} "
                                f"({want[rel]['rows']} rows): truncated or rewritten")
            elif deep and integrity.hash_file(have[rel]) != want[rel][HASH]:
                problems.append(f"{have[rel]}: content differs from the manifest ({HASH} "
                                f"{integrity.hash_file(have[rel])}, expected {want[rel][HASH]}): damaged")
    return problems


def verify(folder: str, subs: Iterable[str] = SUBS, deep: bool = False) -> None:
    """check_parts, raising PartMismatch with every problem."""
    problems = check_parts(folder, subs, deep)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise PartMismatch("damaged shard folder: " + "; ".join(problems[:5]) + more +
                           ". Rebuild it (a `turnforge build` rerun redoes the stage)")


def expected_rows(folder: str) -> dict:
    """{part path: rows} from the manifest (empty when it lists none)."""
    try:
        listed = load_manifest(folder).get("parts")
    except (OSError, ValueError):
        return {}
    return {os.path.join(folder, k): v["rows"] for k, v in listed.items()} if isinstance(listed, dict) else {}


def verified_files(folder: str, sub: str = "data") -> list[str]:
    """The parts of `sub`, after checking their set and sizes against the manifest: what every
    reader of a finished folder calls."""
    verify(folder, (sub,))
    return data_files(folder, sub)


def read_table(path: str, rows: int | None = None) -> pa.Table:
    """A whole part; with `rows` (the manifest's), one holding another number, or one that
    does not parse, stops with its path."""
    try:
        with pa.memory_map(path) as src:
            t = pa.ipc.open_stream(src).read_all()
    except pa.ArrowInvalid as e:
        raise PartMismatch(f"{path}: not a readable Arrow part ({e}); rebuild it") from None
    if rows is not None and t.num_rows != rows:
        raise PartMismatch(f"{path}: {t.num_rows} rows, the manifest says {rows}; rebuild it")
    return t


def iter_batches(folder: str, sub: str = "data") -> Iterator[pa.RecordBatch]:
    """Stream the record batches of a shard folder, part by part, each part checked against
    the manifest (set and sizes first, its rows when read)."""
    rows = expected_rows(folder)
    for p in verified_files(folder, sub):
        yield from iter_batches_of(p, rows.get(p))


def iter_batches_of(path: str, rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """One part's batches; with `rows`, a part holding another number stops with its path."""
    # Plain reads, not a memory map: each batch is freed after use, so resident memory
    # stays at one batch however large the part is.
    n = 0
    try:
        with pa.OSFile(path, "rb") as src:
            for b in pa.ipc.open_stream(src):
                n += b.num_rows
                yield b
    except pa.ArrowInvalid as e:
        raise PartMismatch(f"{path}: not a readable Arrow part after {n} rows ({e}); rebuild it") from None
    if rows is not None and n != rows:
        raise PartMismatch(f"{path}: {n} rows, the manifest says {rows}; rebuild it")


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
