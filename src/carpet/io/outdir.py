"""Where carpet's commands write: staged beside ``--out``, moved into place, one run at a time.

The discipline every command follows (``quantify``, ``suv``, ``imwg``, ``analyze``, ``demo``; ``batch``
takes the lock and the ownership rule, and stages study by study itself):

* **Lock.** ``.NAME.lock`` beside ``--out`` is held with ``flock`` for the whole run; a second run
  into the same ``--out`` is refused (after a second's grace), naming the process that holds it. The
  kernel drops the lock when its process dies (even by SIGKILL), so a killed run never leaves a
  stale lock; forked workers close their copy (:func:`close_inherited_locks`).
* **Stage, then move.** Outputs are written into ``.NAME.PID.tmp`` beside ``--out`` (same file
  system, so the move is a rename). Only a complete run is moved into place: the old folder is
  renamed aside (``.NAME.PID.old``), the new one renamed in, the old one removed. A run that fails or
  is killed leaves the earlier outputs as they were; a kill between the two renames is repaired by
  the next run (the old folder is renamed back) before it does anything else. A command whose
  ``--out`` is a pair of files (``carpet suv``) swaps them under a journal, undone on failure or by the
  next run after a kill (:func:`staged_files`), so the pair is always of one run.
* **Nothing stale.** The finished folder holds only what this run wrote: files of an earlier run that
  this one does not write (``methods.csv`` of a ``--method all`` run, ``lesions.seg.dcm`` of a DICOM
  study, the tables of another analysis plan) go with the old folder.
* **Never someone else's files.** Replacing a folder deletes what is in it, so carpet replaces only
  an empty folder or one it wrote itself (recognised by the ``.carpet-output`` record it leaves
  inside). A non-empty folder carpet did not write is refused with a message; carpet deletes no
  file it did not make. (Chosen over an ``--overwrite`` switch: an existing carpet output is rerun
  into without ceremony, which is what users do, and a typo such as ``--out ~`` cannot cost anything.)

Plain ``os``/``fcntl`` calls: no library offers this combination (atomic directory replace + flock +
ownership check) for folders.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from carpet import __version__
from carpet.errors import OutputError

__all__ = ["OWNER_RECORD", "staged_dir", "staged_files", "owned_dir", "locked_output", "describe_os_error",
           "remove_quietly", "close_inherited_locks", "writes_staged"]

#: The record carpet leaves in every folder it writes (hidden): which command, which version.
OWNER_RECORD = ".carpet-output"

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose another --out",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose another --out",
    errno.EROFS: "the file system is read-only: choose a writable --out",
    errno.EACCES: "no permission to write there: choose another --out",
    errno.EPERM: "no permission to write there: choose another --out",
    errno.ENOTDIR: "a file stands where a folder is expected",
    errno.EISDIR: "a folder stands where a file is expected",
    errno.EEXIST: "a file already stands there",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the path, what went wrong and what to do."""
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    text = f"{where}: {what}" if where else what
    hint = _HINTS.get(exc.errno)
    return f"{text} ({hint})" if hint else text


def remove_quietly(path: Path) -> None:
    """Remove a file or folder tree if it is there; errors are ignored (used for clean-up only)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


#: Lock file descriptors held by this process (closed in forked workers: see close_inherited_locks).
_held: set[int] = set()


def close_inherited_locks() -> None:
    """In a forked child: close the copies of the parent's lock descriptors, so that the lock ends
    with the parent (a flock lasts while any copy is open) even if the child lingers."""
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


@contextmanager
def locked_output(target: str | Path, wait_s: float = 1.0) -> Iterator[Path]:
    """Hold ``.NAME.lock`` beside ``target`` for the duration; refuse if another run holds it.

    Creating the lock file is also the first check that the place is writable, made before any
    computation, so a read-only or missing parent is reported in seconds, not after the work. A held
    lock is retried for ``wait_s`` seconds (the workers of a run that was just killed let go of it
    within that time).
    """
    target = Path(target)
    if not target.parent.exists():
        try:
            target.parent.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(describe_os_error(exc), path=target) from None
    lock = target.with_name(f".{target.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write beside it: {describe_os_error(exc)}", path=target) from None
    _held.add(fd)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                raise OutputError(f"another carpet run{f' (process {holder})' if holder else ''} is writing "
                                  "into it; wait for it to finish or choose another --out", path=target) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:
            raise OutputError(f"cannot write beside it: {describe_os_error(exc)}", path=target) from None
        yield target
    finally:
        _held.discard(fd)
        os.close(fd)  # releases the flock; the (empty) lock file stays: unlinking it would race


def _check_target_dir(out: Path, command: str) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError("a file stands where the output folder should be; --out takes a folder",
                          path=out)
    if out.is_dir() and any(out.iterdir()) and not (out / OWNER_RECORD).is_file():
        raise OutputError(f"the folder holds files carpet did not write; carpet {command} replaces its "
                          "--out folder as a whole, so it writes only into an empty folder or one an "
                          "earlier carpet run wrote", path=out, hint="choose a new or empty --out")


def _sweep(target: Path, *, restore: bool) -> None:
    """Under the lock: clear what killed runs left beside ``target`` (their temp folders and files).

    With ``restore``, an old folder moved aside by a run killed between its two renames is moved
    back when nothing stands at ``target`` (it is the last complete output).
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.\d+\.(tmp|old)")
    for leftover in sorted(p for p in target.parent.iterdir() if pattern.fullmatch(p.name)):
        if leftover.name.endswith(".old") and restore and not target.exists():
            leftover.rename(target)
        else:
            remove_quietly(leftover)


def _owner_record(command: str) -> str:
    return json.dumps({"command": f"carpet {command}", "carpet_version": __version__, "pid": os.getpid()})


@contextmanager
def staged_dir(out: str | Path, command: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out`` (see the module doc).

    Parameters
    ----------
    out : path
        The ``--out`` folder (created if absent).
    command : str
        The command writing it (``quantify``, ``analyze``…), recorded in ``.carpet-output``.

    Raises
    ------
    OutputError
        ``out`` is a file, a non-empty folder carpet did not write, locked by another run, or not
        writable. Errors of the body propagate; an ``OSError`` raised while writing into the stage
        names the final path, not the temporary one.
    """
    out = Path(out).absolute()
    if Path.cwd().is_relative_to(out):  # replacing it would pull the folder from under the shell
        raise OutputError("is the current folder or holds it", path=out, hint="choose a sub-folder for --out")
    with locked_output(out):
        _sweep(out, restore=True)
        _check_target_dir(out, command)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            tmp.mkdir()
            yield tmp
            _relocate(tmp, out)
            (tmp / OWNER_RECORD).write_text(_owner_record(command))
            _swap_in(tmp, out)
        except OSError as exc:
            remove_quietly(tmp)
            raise _renamed(exc, tmp, out) from None
        except BaseException:
            remove_quietly(tmp)
            raise


def writes_staged(command: str):
    """Decorator giving a library function whose keyword ``out_dir`` is a folder the discipline of the
    command line (:func:`staged_dir`): locked, written into a stage, moved into place when complete. The
    command is then thin glue over the function. The wrapped function takes ``staged=False`` to write
    straight into ``out_dir`` — for a caller that stages the folder itself (``carpet batch`` per study, the
    demo as a whole). Paths into the stage in the returned value (a ``Path``, or in a dict, list or
    attribute of the result, e.g. ``result.extra['files']``) are changed to where the files end up.
    """
    def decorate(fn):
        @functools.wraps(fn)
        def run(*args, out_dir, staged: bool = True, **kwargs):
            if not staged:
                return fn(*args, out_dir=out_dir, **kwargs)
            final = Path(out_dir).absolute()
            with staged_dir(final, command) as tmp:
                result = fn(*args, out_dir=tmp, **kwargs)
            return _moved(result, tmp, final, depth=0)
        return run
    return decorate


def _moved(value, tmp: Path, final: Path, depth: int):
    """``value`` with paths (``Path`` or text) inside ``tmp`` pointing into ``final`` instead; dicts and
    lists are changed in place, an object's attributes only at the top level."""
    if isinstance(value, Path):
        return final / value.relative_to(tmp) if value.is_relative_to(tmp) else value
    if isinstance(value, str):
        return str(final) + value[len(str(tmp)):] if value.startswith(str(tmp)) else value
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _moved(item, tmp, final, depth + 1)
    elif isinstance(value, list):
        value[:] = [_moved(item, tmp, final, depth + 1) for item in value]
    elif depth == 0 and hasattr(value, "__dict__"):
        for key, item in vars(value).items():
            if isinstance(item, (Path, str, dict, list)):
                setattr(value, key, _moved(item, tmp, final, depth + 1))
    return value


#: Text outputs that may record paths of files the run wrote (provenance of the demo's own inputs).
_TEXT_SUFFIXES = (".json", ".csv", ".html", ".txt", ".yaml", ".md")


def _relocate(tmp: Path, out: Path) -> None:
    """Rewrite paths inside the stage, recorded in text outputs, to where they will be after the move."""
    staged, final = str(tmp), str(out)
    for path in tmp.rglob("*"):
        if path.suffix in _TEXT_SUFFIXES and path.is_file():
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            if staged in text:
                path.write_text(text.replace(staged, final), encoding="utf-8", errors="surrogateescape")


def _swap_in(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    if out.exists():
        out.rename(old)  # a kill here leaves .old and no out: the next run renames it back
    tmp.rename(out)
    remove_quietly(old)


def _renamed(exc: OSError, tmp: Path, out: Path) -> OSError:
    """The same error with a path inside the stage shown as the path it was meant for (a write
    that fails on close names no file: then the output folder is named)."""
    if exc.filename is None:
        exc.filename = str(out)
    else:
        name = str(exc.filename)
        if name.startswith(str(tmp)):
            exc.filename = str(out) + name[len(str(tmp)):]
    return exc


@contextmanager
def staged_files(*targets: str | Path) -> Iterator[tuple[Path, ...]]:
    """Yield temporary paths beside each target file; on success they replace the targets together.

    For commands whose ``--out`` is a file (``carpet suv``: the NIfTI and its ``.json`` record). The
    first target is locked. The temporary names keep the target's suffixes (writers choose the format
    by them). Two files cannot be renamed in one step, so the swap is journalled (:func:`_swap_files`):
    a run that fails or is killed part-way leaves, or the next run restores, the earlier files as a whole
    — never a new NIfTI beside an old record.
    """
    targets = tuple(Path(t).absolute() for t in targets)
    with locked_output(targets[0]):
        for t in targets:
            if t.is_dir():
                raise OutputError("a folder stands where the output file should be; --out takes a file "
                                  "name such as suv.nii.gz", path=t)
        _repair_files(targets)
        tmps = tuple(t.with_name(f".{os.getpid()}.tmp-{t.name}") for t in targets)
        try:
            yield tmps
            _swap_files(tmps, targets)
        except OSError as exc:
            for tmp, t in zip(tmps, targets):
                remove_quietly(tmp)
                exc = _renamed(exc, tmp, t)
            raise exc from None
        except BaseException:
            for tmp in tmps:
                remove_quietly(tmp)
            raise


def _swap_files(tmps: tuple[Path, ...], targets: tuple[Path, ...]) -> None:
    """Move complete temporary files onto their targets as one change.

    Each existing target is first hard-linked to ``.PID.old-NAME`` (it stays in place meanwhile); the
    journal ``.PID.swap-NAME`` is then created, and only then are the targets replaced. While the journal
    exists the swap can be undone: a failure here undoes it at once, a kill is undone by the next run
    (:func:`_repair_files`). The journal goes when every target is replaced: from then on the new files
    are the output.
    """
    pid = os.getpid()
    olds = [t.with_name(f".{pid}.old-{t.name}") for t in targets]
    journal = targets[0].with_name(f".{pid}.swap-{targets[0].name}")
    try:
        for t, old in zip(targets, olds):
            if t.exists():
                try:
                    os.link(t, old)
                except OSError:  # a file system without hard links
                    shutil.copy2(t, old)
        journal.touch(exist_ok=False)
    except BaseException:
        for old in olds:
            remove_quietly(old)
        raise
    try:
        for tmp, t in zip(tmps, targets):
            os.replace(tmp, t)
    except BaseException:
        _undo_swap(targets, pid)
        raise
    journal.unlink()
    for old in olds:
        remove_quietly(old)


def _undo_swap(targets: tuple[Path, ...], pid: int) -> None:
    """Put back the files a journalled swap of process ``pid`` replaced; remove the ones it created.
    The journal stays when something could not be put back (the next run tries again)."""
    undone = True
    for t in targets:
        old = t.with_name(f".{pid}.old-{t.name}")
        try:
            if old.exists():
                os.replace(old, t)
                remove_quietly(old)   # still there when it was a link to the same file (rename does nothing)
            elif t.exists():          # no earlier file: this one is the swap's
                t.unlink()
        except OSError:
            undone = False
    if undone:
        remove_quietly(targets[0].with_name(f".{pid}.swap-{targets[0].name}"))


def _repair_files(targets: tuple[Path, ...]) -> None:
    """Under the lock: undo the swap of a run killed in the middle of it (its journal is still there),
    then clear what killed runs left beside the targets (temporary files, links to old files)."""
    journal = re.compile(rf"\.(\d+)\.swap-{re.escape(targets[0].name)}")
    for path in list(targets[0].parent.iterdir()):
        found = journal.fullmatch(path.name)
        if found:
            _undo_swap(targets, int(found.group(1)))
    for t in targets:
        pattern = re.compile(rf"\.\d+\.(tmp|old)-{re.escape(t.name)}")
        for leftover in [p for p in t.parent.iterdir() if pattern.fullmatch(p.name)]:
            remove_quietly(leftover)


@contextmanager
def owned_dir(out: str | Path, command: str) -> Iterator[Path]:
    """Lock ``out`` and claim it for a command that updates its folder in place (``carpet batch``).

    Same lock and ownership rule as :func:`staged_dir`, without the whole-folder swap: the command
    stages its own pieces (one study at a time) and removes what it no longer writes.
    """
    out = Path(out).absolute()
    with locked_output(out):
        _sweep(out, restore=True)
        _check_target_dir(out, command)
        try:
            out.mkdir(exist_ok=True)
            (out / OWNER_RECORD).write_text(_owner_record(command))
        except OSError as exc:
            raise OutputError(describe_os_error(exc), path=out) from None
        yield out
