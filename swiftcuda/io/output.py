"""Writing outputs all-or-nothing, and never over the user's files unless asked.

Everything is written to a hidden temporary sibling first and moved into place only when complete,
so an error or an interruption leaves no half-written folder or file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from swiftcuda.errors import InputError


def _permission_bits(directory: bool) -> int:
    """The mode a plain ``open`` / ``mkdir`` would give under the current umask (temporary files
    are created private, and would otherwise stay so after the move)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def check_writable_target(target: Path, overwrite: bool, what: str = "output", folder: bool | None = None) -> None:
    """Refuse a target that already holds something, unless ``overwrite``.

    Args:
        folder: True when ``target`` must be a folder, False when it must be a file, None for either:
            an existing target of the other kind is refused even with ``overwrite`` (so a command
            checks it before its slow parts, not when it comes to write).

    Raises:
        InputError: the target exists (and is non-empty, for a folder) without ``overwrite``,
            or it exists as the wrong kind (a file where a folder is wanted, or the reverse).
    """
    if not target.exists():
        return
    if folder is True and not target.is_dir():
        raise InputError(f"{what} {target} is a file: choose a folder path")
    if folder is False and target.is_dir():
        raise InputError(f"{what} {target} is a folder: give a file path")
    if not overwrite:
        if target.is_dir() and not any(target.iterdir()):
            return
        raise InputError(
            f"{what} {target} already exists: pass overwrite=True to replace it, or choose another path",
            cli_message=f"{what} {target} already exists: pass --overwrite to replace it, or choose another path",
        )


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder that replaces ``target`` when the block completes without error.

    Args:
        target: the folder to create (its parents are created too).
        overwrite: replace an existing non-empty ``target``.

    Yields:
        The temporary folder to write into (a hidden sibling of ``target``).
    """
    target = Path(target)
    check_writable_target(target, overwrite, "output folder", folder=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    staging.chmod(_permission_bits(directory=True))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


@contextlib.contextmanager
def staged_file(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A temporary file path that replaces ``target`` when the block completes without error.

    The temporary path keeps ``target``'s suffix, so writers that choose a format by extension
    (OpenCV, Pillow) behave as for the real name.
    """
    target = Path(target)
    check_writable_target(target, overwrite, "file", folder=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent)
    os.close(handle)
    staging = Path(name)
    staging.chmod(_permission_bits(directory=False))
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, target)
