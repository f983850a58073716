"""Integrity helpers shared by every writer (docs/integrity.md):

- `FolderLock`: one run per output folder or pool, on a filesystem several machines share;
- `temp_name`: a temp file name no other writer (process, host) can hold;
- `Journal` and `file_op`: a multi-step change that a rerun finishes after a kill, and the
  fault-injection hook that counts file operations to prove it;
- `hash_file` / `HashingSink`: the fast hash of a part, while it is written or afterwards.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

import xxhash

from .config import ConfigError

HOST = socket.gethostname()
LOCK_NAME = ".turnforge.lock"
# A lock whose holder runs on another host is stale when its heartbeat (the lock file's mtime,
# touched every HEARTBEAT_S by the holder) is older than this many seconds.
STALE_AFTER_S = float(os.environ.get("TURNFORGE_LOCK_STALE_S", "900") or 900)
HEARTBEAT_S = 30.0

# ------------------------------------------------------------------ fault injection

# TURNFORGE_KILL_AFTER_FILE_OPS=N: SIGKILL this process right after its N-th file operation
# (a create, rename, delete or folder move of a writer, a stage or an admission);
# TURNFORGE_KILL_AFTER_FILES=N counts only files made visible. Unset in normal use.
_KILL_AFTER_OPS = int(os.environ.get("TURNFORGE_KILL_AFTER_FILE_OPS", "0") or 0)
_KILL_AFTER_FILES = int(os.environ.get("TURNFORGE_KILL_AFTER_FILES", "0") or 0)
_count = {"ops": 0, "files": 0}


def file_op(visible: bool = False) -> None:
    """Count one file operation (`visible`: it made a finished file visible); the kill hooks
    fire here."""
    _count["ops"] += 1
    _count["files"] += visible
    if (_KILL_AFTER_OPS and _count["ops"] >= _KILL_AFTER_OPS) or (
            visible and _KILL_AFTER_FILES and _count["files"] >= _KILL_AFTER_FILES):
        os.kill(os.getpid(), 9)


def file_ops() -> int:
    """File operations this process has made so far (tests size the kill loop with it)."""
    return _count["ops"]


def set_kill_after_ops(n: int) -> None:
    """The in-process form of TURNFORGE_KILL_AFTER_FILE_OPS (a forked test child sets it)."""
    global _KILL_AFTER_OPS
    _KILL_AFTER_OPS, _count["ops"] = n, 0


# ------------------------------------------------------------------ temp names and errors

def temp_name(path: str) -> str:
    """`path` + a suffix unique to this writer: host, pid and a random part, so two processes
    (or two Ray nodes with the same pid) never write or delete each other's temp file."""
    return f"{path}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(src: str, dst: str) -> None:
    """os.replace, made durable and counted."""
    os.replace(src, dst)
    fsync_dir(os.path.dirname(dst))
    file_op()


def rmtree(path: str) -> None:
    import shutil

    if os.path.lexists(path):
        shutil.rmtree(path)
        file_op()


def write_error(e: OSError, path: str, what: str = "") -> OSError:
    """An OSError (disk full, permission denied...) that names the file and what was writing
    it; the original is kept as its cause."""
    if path in str(e):
        return named_error(e, what)
    return named_error(e, f"{what + ': ' if what else ''}cannot write {path}")


def named_error(e: OSError, prefix: str) -> OSError:
    """The same kind of OSError with `prefix: ` before its message (a stage, a file)."""
    if not prefix:
        return e
    what = e.strerror or str(e)
    if e.strerror and e.filename and str(e.filename) not in prefix:
        what += f" ({e.filename})"
    msg = f"{prefix}: {what}"
    try:
        return type(e)(e.errno, msg) if e.errno else type(e)(msg)
    except TypeError:
        return OSError(e.errno, msg)


# ------------------------------------------------------------------ hashing parts

HASH = "xxh3_64"


def hash_file(path: str, chunk: int = 4 << 20) -> str:
    """xxh3-64 of a file, read into one reused buffer (memory stays at `chunk`)."""
    h, buf = xxhash.xxh3_64(), bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


class HashingSink:
    """A file-like sink for pyarrow writers: passes bytes through to `f` and hashes and counts
    them on the way, so a part's hash costs no second read."""

    def __init__(self, f):
        self.f, self.h, self.n, self.closed = f, xxhash.xxh3_64(), 0, False

    def write(self, b) -> int:
        self.h.update(b)
        self.n += memoryview(b).nbytes
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()

    def tell(self) -> int:
        return self.n

    def writable(self) -> bool:
        return True

    def close(self) -> None:  # the owner closes the real file after fsync
        self.closed = True


# ------------------------------------------------------------------ the lock

class LockHeld(ConfigError):
    """Another live run holds the folder."""


_held: dict[str, int] = {}  # folder (absolute) -> pid holding it (a forked child holds nothing)


class FolderLock:
    """`folder/.turnforge.lock`, created with O_EXCL (atomic on local disks and NFS), holding
    the holder's pid, host, start time and a token. A run that finds it refuses at once naming
    the holder, unless the lock is stale: its pid is dead on this host, or (another host) its
    heartbeat is older than `stale_after_s`; a stale lock is taken over with a warning. A
    process holding a lock on a folder or one above it takes nested locks for free (a build
    locks OUT; its stages, candidates and mix run inside)."""

    def __init__(self, folder: str, what: str = "run", stale_after_s: float | None = None):
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.what = what
        self.stale_after_s = STALE_AFTER_S if stale_after_s is None else stale_after_s
        self.token = uuid.uuid4().hex
        self.nested = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _holder_of_parent(self) -> bool:
        d = self.folder
        while True:
            if _held.get(d) == os.getpid():
                return True
            up = os.path.dirname(d)
            if up == d:
                return False
            d = up

    def acquire(self) -> None:
        if self._holder_of_parent():
            self.nested = True
            return
        self._check_ancestors()
        self.created = not os.path.exists(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        info = {"pid": os.getpid(), "host": HOST, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "started_unix": time.time(), "token": self.token, "what": self.what}  # no argv: a --set secret
        data = (json.dumps(info, indent=2) + "\n").encode()
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read()
                reason = self._stale(holder)
                if reason is None:
                    raise LockHeld(f"{self.folder} is in use by another run: {describe(holder)}; wait for it to "
                                   f"finish, or if it is gone delete {self.path}") from None
                self._take_over(holder, reason)
                continue
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            _held[self.folder] = os.getpid()
            self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="turnforge-lock")
            self._beat.start()
            return
        raise LockHeld(f"{self.folder}: could not take the lock {self.path} (other runs keep taking it)")

    def _check_ancestors(self) -> None:
        """A live run holding a folder above this one (a build's OUT, a pool) owns this one too:
        `turnforge stage --out OUT/stages/02-quality` during that build is refused."""
        d = os.path.dirname(self.folder)
        while True:
            if os.path.exists(os.path.join(d, LOCK_NAME)):
                above = FolderLock(d, stale_after_s=self.stale_after_s)
                holder = above._read()
                if above._stale(holder) is None:
                    raise LockHeld(f"{self.folder} is inside {d}, which is in use by another run: {describe(holder)}")
            up = os.path.dirname(d)
            if up == d:
                return
            d = up

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                holder = json.load(f)
            holder["_mtime"] = os.stat(self.path).st_mtime
            return holder
        except FileNotFoundError:
            return {"_gone": True}
        except (OSError, ValueError):  # being written this very moment, or torn: judge by age only
            try:
                return {"_mtime": os.stat(self.path).st_mtime, "_unreadable": True}
            except FileNotFoundError:
                return {"_gone": True}

    def _stale(self, holder: dict) -> str | None:
        if holder.get("_gone"):
            return "gone"
        if holder.get("host") == HOST and isinstance(holder.get("pid"), int):
            if not _alive(holder["pid"]):
                return f"its process {holder['pid']} on this host is dead"
            return None
        age = time.time() - holder.get("_mtime", time.time())
        if holder.get("_unreadable") and age < 5:
            return None
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s (> {self.stale_after_s:.0f} s, TURNFORGE_LOCK_STALE_S)"
        return None

    def _take_over(self, holder: dict, reason: str) -> None:
        if holder.get("_gone"):
            return
        # Rename it to a name of our own, then check it is the lock we judged stale: a second
        # run taking it over at the same time may already have replaced it with a live one.
        aside = f"{self.path}.stale.{self.token}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, encoding="utf-8") as f:
                got = json.load(f)
        except (OSError, ValueError):
            got = {}
        if holder.get("token") and got.get("token") != holder.get("token"):
            try:  # a live lock: put it back unless yet another run took the name meanwhile
                os.link(aside, self.path)
            except OSError:
                pass
            remove_quietly(aside)
            return
        remove_quietly(aside)
        print(f"warning: {self.folder}: took over a stale lock ({reason}): {describe(holder)}", file=sys.stderr)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        if self.nested:
            return
        self._stop.set()
        _held.pop(self.folder, None)
        try:
            with open(self.path, encoding="utf-8") as f:
                mine = json.load(f).get("token") == self.token
        except (OSError, ValueError):
            mine = False
        if mine:
            remove_quietly(self.path)
            if self.created:  # a run that failed at its start leaves no empty folder behind
                with contextlib.suppress(OSError):
                    os.rmdir(self.folder)


def describe(holder: dict) -> str:
    if holder.get("_unreadable"):
        return "a lock being written"
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
            f" ({holder.get('what', 'run')})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by its parent) holds nothing any more
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# ------------------------------------------------------------------ the journal

class Journal:
    """A multi-step change as a file: `begin(plan)` writes the plan (everything the remaining
    steps need) before the first step, `done()` removes it after the last. A run that finds a
    journal finishes that change first (`pending()`); every step must therefore be idempotent
    (a rename whose source is gone was done)."""

    def __init__(self, folder: str, name: str = ".journal.json"):
        self.path = os.path.join(folder, name)

    def pending(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def begin(self, plan: dict[str, Any]) -> None:
        tmp = temp_name(self.path)
        with open(tmp, "wb") as f:
            f.write((json.dumps(plan, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        replace(tmp, self.path)

    def done(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)
            fsync_dir(os.path.dirname(self.path))
            file_op()


def move(src: str, dst: str) -> None:
    """An idempotent journal step: rename src to dst unless it already happened (src gone and
    dst there)."""
    if not os.path.lexists(src) and os.path.lexists(dst):
        return
    replace(src, dst)
