"""Atomic file writes: a reader never sees a half-written output file, and it gets the user's permissions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


#: why a path that exists is not read: the one wording for every reader
NOT_REGULAR = "not a regular file (a FIFO, device or socket is not read)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 less
    the umask), not the temporary file's private 0600. A path that is a
    device, a FIFO or a socket (or a link to one) is written through, as a
    shell redirection writes it, never replaced by a regular file.
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else ValueError.

    A FIFO, a device (a link to /dev/zero) or a socket is refused without
    reading from it: opened non-blocking, checked by fstat, never read.
    FileNotFoundError, IsADirectoryError and other OSErrors pass through.
    """
    import stat

    if Path(path).is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(NOT_REGULAR)
        if info.st_size > limit:
            raise ValueError(f"{info.st_size} bytes; at most {limit} are read")
        with os.fdopen(fd, "rb", closefd=False) as f:
            # read(n) allocates n bytes up front: ask for what fstat says is there (one more catches a file
            # that grew meanwhile), not for the limit
            data = f.read(min(limit, info.st_size) + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"more than {limit} bytes; at most {limit} are read")
    return data


def peak_memory_bytes() -> int:
    """This process's peak resident memory (Linux ``VmHWM``; ``ru_maxrss`` of a child would also count its
    parent's memory at fork time)."""
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) * 1024


def read_input(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """``read_regular_file`` for a command's input file, every refusal one ``OrdersearchError`` naming ``path``
    (``what``: the kind of file expected, for "is a folder, not a ...")."""
    from .errors import OrdersearchError

    try:
        return read_regular_file(path, limit)
    except FileNotFoundError:
        raise OrdersearchError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise OrdersearchError(f"{path}: is a folder, not {what}") from None
    except ValueError as e:
        raise OrdersearchError(f"{path}: {e}") from None
