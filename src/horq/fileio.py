"""Atomic file writes: the final name holds either the old file or the whole new one, never a half file;
and small file helpers (same-file checks, generated sections of markdown documents).

The file gets the permissions any newly created file would (``0o666`` less the process umask), not the
``0o600`` of a temporary file, so an exported model or a checkpoint is as readable as the user's other files;
an error names the user's path, never the hidden temporary one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from pathlib import Path

#: Permission bits of a new file before the umask (what ``open(path, "w")`` asks for).
NEW_FILE_MODE = 0o666
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux: /proc/self/status).

    Elsewhere it is set and restored under a lock, which is safe against other threads of this module only.
    """
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _user_error(exc: OSError, tmp: str, path: Path) -> OSError:
    """The same error about ``path``: the temporary file's name means nothing to the user."""
    if exc.filename in (tmp, None) or exc.filename2 == str(path):
        return type(exc)(exc.errno, exc.strerror or str(exc), str(path))
    return exc


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb"):
    """Opens a temporary file beside ``path``; on success it is fsynced and renamed onto ``path``.

    If the body raises (or the process dies), ``path`` is untouched and the temporary file is removed.

    Raises:
        OSError: the file cannot be written; the error's filename is ``path``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports modes 'wb' and 'w', got {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _user_error(exc, exc.filename, path) from exc
    try:
        with os.fdopen(fd, mode) as f:
            os.chmod(tmp, NEW_FILE_MODE & ~current_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _user_error(exc, tmp, path) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def same_file(a, b) -> bool:
    """True if the paths name one file (through links, ``..`` or another spelling); False if ``b`` does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def check_marked_section(path, name: str) -> None:
    """Raises ValueError unless ``path`` is missing or holds the ``<!-- name:begin/end -->`` markers (a
    benchmark checks its output document before it spends minutes timing)."""
    begin, end = _markers(name)
    path = Path(path)
    if path.exists():
        text = path.read_text()
        if begin not in text or end not in text:
            raise ValueError(f"{path} has no {begin} ... {end} section to rewrite")


def replace_marked_section(path, name: str, body: str) -> None:
    """Rewrites what lies between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in a markdown file
    (generated tables in hand-written docs), atomically; a missing file is created with just the section.

    Raises:
        ValueError: the file exists without the markers.
    """
    begin, end = _markers(name)
    path = Path(path)
    check_marked_section(path, name)
    text = path.read_text() if path.exists() else f"{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    atomic_write_text(path, f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}")
