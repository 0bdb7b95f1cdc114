"""How cmbdet writes into folders that users name: nothing half-written, nothing written
through a link, nothing outside the output folder touched, and one batch per folder.

- **Files** are written to a temporary created exclusively (``tempfile.mkstemp``:
  ``O_CREAT | O_EXCL``, owner-only until complete) in the target's folder and renamed over the
  target. A reader never sees half a file, and a link planted at the target's name is
  replaced by the file, never written through.
- **Folders** are staged in a private folder (``tempfile.mkdtemp``): beside a folder that does
  not exist yet, which the staging folder then becomes by one rename; inside an existing one
  (it may be a mount point, or sit in a folder the user cannot write), whose files are then
  replaced one by one, the file that marks the folder complete removed first and written last.
  Staging names carry the host and process that made them (``.NAME.partial-HOST-PID-RANDOM``):
  a later run cleans what killed runs of this host left, never what a live run is writing.
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
from collections.abc import Iterable, Iterator
from pathlib import Path

from cmbdet.errors import InputError

LOCK_NAME = ".cmbdet.lock"
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
    """This process's file-creation mask, read without changing it (threads may be writing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return _UMASK_AT_IMPORT


def _umask_at_import() -> int:
    mask = os.umask(0)  # where /proc is missing: read once, before any thread writes
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


# ----------------------------------------------------------------------------- folders


def owner_tag() -> str:
    """``HOST-PID`` of this process, as staging names carry it."""
    return f"{HOST_TAG}-{os.getpid()}"


def staging_folder(final: Path) -> Path:
    """A new private, empty folder to write ``final``'s files into, then :func:`publish`:
    beside ``final`` when it does not exist, inside it when it does.

    Raises:
        InputError: ``final`` is a link or a file.
    """
    final = Path(final)
    _check_folder_place(final)
    where = final if final.is_dir() else final.parent
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{owner_tag()}-", dir=where))


def publish(staging: Path, final: Path, last: str | None = None) -> None:
    """Put the staged files of :func:`staging_folder` in place.

    A staging folder beside a missing ``final`` becomes ``final`` by one rename. One inside an
    existing ``final`` gives up its files one by one, each replacing its namesake by a rename;
    ``last`` (the file that says the folder is complete, e.g. ``run.json``) is removed first
    and moved in last, so an interrupted publish leaves a folder that reads as incomplete.
    Other files of ``final`` are left alone (callers check what it holds first).

    Raises:
        InputError: ``final`` is a link or a file.
    """
    staging, final = Path(staging), Path(final)
    _check_folder_place(final)
    if staging.parent != final:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it owner-only
        os.rename(staging, final)  # fails on a non-empty folder that appeared meanwhile
        return
    names = sorted(p.name for p in staging.iterdir())
    if last is not None and last in names:
        (final / last).unlink(missing_ok=True)
        names = [name for name in names if name != last] + [last]
    for name in names:
        os.replace(staging / name, final / name)
    staging.rmdir()


def _check_folder_place(final: Path) -> None:
    if final.is_symlink():
        raise InputError(final, "is a symbolic link; cmbdet does not write through links")
    if final.exists() and not final.is_dir():
        raise InputError(final, "output path exists and is not a folder")


def leftovers_of(final: Path) -> list[Path]:
    """Staging folders, beside ``final`` or inside it, that runs writing ``final`` left behind
    when they were killed: this host's whose process is gone, and unattributed ones (left by
    earlier versions of cmbdet). Links and live runs' folders are never listed."""
    final = Path(final)
    places = [final.parent] + ([final] if _is_real_folder(final) else [])
    found = []
    for place in places:
        with contextlib.suppress(OSError):
            for entry in place.iterdir():
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
        if path is not None and any(p.is_relative_to(root) for p in _both_paths(Path(path))):
            raise InputError(shown, f"{role} folder holds the input {path}; choose another {role}")
    if replaced and Path.cwd().resolve().is_relative_to(root):
        raise InputError(shown, f"{role} is the current folder or holds it; choose a new folder")


def refuse_links(folder: Path, role: str = "--out") -> None:
    """Refuse an output folder with a symbolic link anywhere inside it (a command that writes
    into an existing tree, e.g. resuming training, would otherwise write where it leads).

    Raises:
        InputError: naming the link.
    """
    for root, folders, files in os.walk(folder):  # never descends into linked folders
        for name in sorted(folders + files):
            if os.path.islink(os.path.join(root, name)):
                raise InputError(
                    Path(root) / name,
                    f"is a symbolic link inside {role}; cmbdet never writes through links",
                )


def _both_paths(path: Path) -> tuple[Path, Path]:
    """Where ``path`` is named (its folders resolved) and where its file lies (every link
    followed): an input reached through a link (git-annex, DataLad) sits in both places."""
    named = Path(os.path.abspath(path.expanduser()))
    return named.parent.resolve() / named.name, named.resolve()


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
        handle = _open_lock_file(path)
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


def _open_lock_file(path: Path) -> int:
    """The lock file, opened for reading and writing (created if missing), never through a
    link: a symbolic link, a folder or a hard-linked file there is refused."""
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EISDIR):
            raise InputError(path, "is a link or a folder, not cmbdet's lock file") from None
        if error.errno in (errno.EACCES, errno.EPERM):
            raise InputError(
                path, "cannot be opened (permission denied): another user's lock? delete it"
            ) from None
        raise
    if os.fstat(handle).st_nlink > 1:
        os.close(handle)
        raise InputError(path, "is a hard link to another file, not cmbdet's lock file")
    return handle


def _acquire_without_flock(path: Path) -> int:
    """Where the file system has no ``flock``: the lock is held while its recorded process of
    this host lives; one of another host is trusted until its file is deleted by hand."""
    holder = _read_holder(path)
    if holder and not _holder_is_gone(holder):
        raise InputError(path.parent, _held_by(path))
    handle = _open_lock_file(path)
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
