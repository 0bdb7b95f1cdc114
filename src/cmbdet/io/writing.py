"""How cmbdet writes into folders that users name: nothing half-written, nothing written
through a link, nothing outside the output folder touched, and one batch per folder.

- **Files** are written to a temporary created exclusively (``tempfile.mkstemp``:
  ``O_CREAT | O_EXCL``, owner-only until complete) in the target's folder and renamed over the
  target. A reader never sees half a file, and a link planted at the target's name is
  replaced by the file, never written through.
- **Folders** are staged the same way (``tempfile.mkdtemp``, a private folder beside the final
  one) and renamed into place; an existing folder is set aside first and deleted after, so it
  is never half-deleted. Staging names carry the host and process that made them
  (``.NAME.partial-HOST-PID-RANDOM``): a later run cleans what killed runs of this host left,
  never what a live run is writing.
- **Locks**: a batch holds ``.cmbdet.lock`` in its output folder (an ``flock`` on a file that
  records host, process and command), so a second batch into the same folder is refused with
  who holds it, and the lock of a run that died is free again.
- **Links** are never followed when planning, cleaning or replacing outputs; a link where
  output must go is refused. Inputs may be links (DataLad and git-annex trees are).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from cmbdet.errors import InputError

LOCK_NAME = ".cmbdet.lock"
STAGING_KINDS = ("partial", "replaced")
# the host part of staging names: 8 hex digits of the host name's hash (names may be long)
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# .NAME.partial-HOST-PID-RANDOM (this version) or .NAME.partial-HEX (earlier versions)
_STAGING_NAME = re.compile(
    r"\.(?P<name>.+)\.(?:partial|replaced)-(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?[0-9A-Za-z_]+"
)


# ----------------------------------------------------------------------------- files


def write_atomic(path: str | Path, content: str | bytes) -> Path:
    """Write ``content`` (text as UTF-8) to ``path`` all at once.

    The bytes go to an exclusively created temporary beside ``path``, which then replaces
    ``path`` (a link standing there is replaced, not followed). File mode as for ``open``.
    """
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """This process's file-creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- folders


def owner_tag() -> str:
    """``HOST-PID`` of this process, as staging names carry it."""
    return f"{HOST_TAG}-{os.getpid()}"


def staging_folder(final: Path) -> Path:
    """A new private, empty folder beside ``final`` to write into, then :func:`publish`."""
    final = Path(final)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{owner_tag()}-", dir=final.parent))


def publish(staging: Path, final: Path) -> None:
    """Rename the staged folder to ``final``.

    An existing ``final`` is renamed aside first and deleted afterwards, so at every moment
    either the old or the new folder is complete. A link at ``final`` is refused.

    Raises:
        InputError: ``final`` is a link, or a file.
    """
    staging, final = Path(staging), Path(final)
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it owner-only
    if final.is_symlink():
        raise InputError(final, "is a symbolic link; cmbdet does not write through links")
    if final.exists() and not final.is_dir():
        raise InputError(final, "output path exists and is not a folder")
    if not final.exists():
        os.replace(staging, final)
        return
    aside = final.parent / f".{final.name}.replaced-{owner_tag()}-{uuid.uuid4().hex[:8]}"
    os.replace(final, aside)
    os.replace(staging, final)
    shutil.rmtree(aside, ignore_errors=True)


def leftovers_of(final: Path) -> list[Path]:
    """Staging and set-aside folders beside ``final`` that runs writing ``final`` left behind
    when they were killed: this host's whose process is gone, and unattributed ones (left by
    cmbdet before 0.2). Links and live runs' folders are never listed."""
    final = Path(final)
    found = []
    with contextlib.suppress(OSError):
        for entry in final.parent.iterdir():
            match = _STAGING_NAME.fullmatch(entry.name)
            if match is None or match["name"] != final.name or not _is_real_folder(entry):
                continue
            if match["host"] is None or (
                match["host"] == HOST_TAG and not process_alive(int(match["pid"]))
            ):
                found.append(entry)
    return found


def is_staging_name(name: str) -> bool:
    """Whether ``name`` is that of a staging or set-aside folder (any version, any owner)."""
    return _STAGING_NAME.fullmatch(name) is not None


def remove_folders(folders: Iterable[Path]) -> None:
    """Delete folders (never through a link: ``shutil.rmtree`` refuses links)."""
    for folder in folders:
        if _is_real_folder(folder):
            shutil.rmtree(folder, ignore_errors=True)


def _is_real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


# ----------------------------------------------------------------------------- checks


def check_writable(folder: Path, role: str = "--out", shown: Path | None = None) -> None:
    """Refuse a place that cannot be written, before any work.

    Probes ``folder`` when it exists, else its nearest existing parent, by creating and
    removing a private folder there (permissions, read-only file systems, ``/proc``).

    Raises:
        InputError: naming ``shown`` (default ``folder``).
    """
    folder = Path(folder)
    shown = folder if shown is None else shown
    probe_in = folder if folder.is_dir() else next((p for p in folder.parents if p.is_dir()), None)
    if probe_in is None:
        raise InputError(shown, f"{role} folder cannot be created (no existing parent folder)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".cmbdet-probe-", dir=probe_in))
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise InputError(shown, f"{role} folder cannot be written ({reason.lower()})") from None


def check_not_inputs(
    out: Path,
    inputs: Iterable[Path | None],
    *,
    replaced: bool,
    role: str = "--out",
    shown: Path | None = None,
) -> None:
    """Refuse an output folder that is, or holds, one of ``inputs`` (files or folders); and,
    when the folder itself is ``replaced`` by the outputs, the working folder or one holding
    it (replacing it would pull the folder from under the user's shell).

    Raises:
        InputError: naming ``shown`` (default ``out``) and the input.
    """
    root, shown = Path(out).resolve(), out if shown is None else shown
    for path in inputs:
        if path is not None and Path(path).resolve().is_relative_to(root):
            raise InputError(shown, f"{role} folder holds the input {path}; choose another {role}")
    if replaced and Path.cwd().resolve().is_relative_to(root):
        raise InputError(shown, f"{role} is the current folder or holds it; choose a new folder")


def real_output_path(out: Path) -> Path:
    """``out`` as an absolute path whose parent folders are resolved (a link the user gave
    as ``--out`` itself is followed: that is where the user keeps outputs)."""
    out = Path(os.path.abspath(Path(out).expanduser()))  # "." and ".." named
    return out.resolve() if out.is_symlink() else out.parent.resolve() / out.name


# ----------------------------------------------------------------------------- locks


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder/.cmbdet.lock`` while the block runs (the folder must exist).

    The lock is an ``flock`` on that file, so it is free again as soon as its holder exits,
    however it ends; the file records who holds it (host, process, command, start).

    Raises:
        InputError: another live run holds the lock (named in the message), or a link or
            folder stands at the lock's name.
    """
    path = Path(folder) / LOCK_NAME
    handle = _acquire(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _same_file(handle, path):
                path.unlink()
        os.close(handle)


def _acquire(path: Path) -> int:
    for _ in range(10):  # retried only when a holder removed the file as we opened it
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EISDIR):
                raise InputError(path, "is a link or a folder, not cmbdet's lock file") from None
            raise
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(handle)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise InputError(path.parent, _held_by(path)) from None
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
                raise
            handle = _acquire_without_flock(path)
            return handle
        if not _same_file(handle, path):
            os.close(handle)
            continue
        _record_holder(handle)
        return handle
    raise InputError(path.parent, _held_by(path))


def _acquire_without_flock(path: Path) -> int:
    """Where the file system has no ``flock``: the lock is held while its recorded process of
    this host lives; one of another host is trusted until its file is deleted by hand."""
    holder = _read_holder(path)
    if holder and not _holder_is_gone(holder):
        raise InputError(path.parent, _held_by(path))
    handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    _record_holder(handle)
    return handle


def _holder_is_gone(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return not (isinstance(pid, int) and process_alive(pid))


def _record_holder(handle: int) -> None:
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["cmbdet", *sys.argv[1:]])[:500],
    }
    os.ftruncate(handle, 0)
    os.pwrite(handle, (json.dumps(record) + "\n").encode(), 0)


def _read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _held_by(path: Path) -> str:
    holder = _read_holder(path)
    who = (
        f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
        if holder
        else "another process"
    )
    return (
        f"another cmbdet run is writing into this folder ({who}); wait for it to finish, or "
        f"delete {path} if that run is gone"
    )


def _same_file(handle: int, path: Path) -> bool:
    try:
        held, named = os.fstat(handle), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)
