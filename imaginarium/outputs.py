"""Where commands write: checked before the work starts, never replaced unasked, written whole or not at all.

Every writing command calls :func:`check_output` on what it will write before it computes anything,
so a path that cannot be written or a file that would be replaced (without ``overwrite``) costs the
user one line, not the computation. Files are written under a temporary name beside their place and
renamed into it (:func:`atomic_write_bytes`, :func:`atomic_path`), so a crash leaves either the old
file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from imaginarium.errors import ImaginariumError


class OutputError(ImaginariumError):
    """An output that cannot be written, or that exists and would be replaced without ``overwrite``."""


def check_output(path: str | Path, overwrite: bool = False, files: Sequence[str] | None = None) -> Path:
    """Refuse, before any work, an output ``path`` that cannot be written or would replace something.

    :param files: ``None``: ``path`` itself is the output (a file, or a folder made whole), and must
        not exist. Names: ``path`` is a folder those files are written into; it may exist, they may not.
    :raises OutputError: naming the path and the way out (``--overwrite``, another path).
    """
    path = Path(path)
    if files is None:
        existing = [path] if path.exists() or path.is_symlink() else []
    elif path.exists() and not path.is_dir():
        raise OutputError(f"{str(path)!r} is a file, not a folder to write into")
    else:
        existing = [path / name for name in files if (path / name).exists()]
    if existing and not overwrite:
        raise OutputError(f"{str(existing[0])!r} already exists; pass --overwrite to replace it")
    check_writable(path.parent if files is None else path)
    return path


def check_writable(folder: str | Path) -> None:
    """Refuse a folder that cannot be created or written, by trying: permissions alone do not tell
    (a read-only mount, or a user for whom they do not apply).

    :raises OutputError: naming the folder and why.
    """
    folder = Path(folder)
    ancestor = folder
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write into {str(folder)!r}: {str(ancestor)!r} is not a folder")
    try:
        descriptor, probe = tempfile.mkstemp(dir=ancestor, prefix=".imaginarium-write-check-")
    except OSError as error:
        raise OutputError(f"cannot write into {str(folder)!r}: {error.strerror or error}") from None
    os.close(descriptor)
    os.unlink(probe)


def atomic_write_bytes(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` with its suffix, for writers that take a file name (video
    encoders, SB3's ``save``); renamed to ``path`` when the block ends without error, else removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(descriptor)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
