"""Write files under a temporary name and rename, so no reader sees half a file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary name keeps the suffix, so writers that choose a format from
    the extension (pandas, matplotlib, Keras) still work. On error the
    temporary file or directory is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # let the writer create it (some refuse to overwrite)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


class WriteAllError(OSError):
    """:func:`write_all` failed at ``path`` for ``reason``; nothing it was given was written."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _stage(folder: Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file in ``folder`` (beside its target, so the rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=".lesionscan-", suffix=".tmp.png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _backup(target: Path) -> Path:
    """A copy of the existing entry ``target`` beside it (a link stays a link), to put back if a later rename fails."""
    fd, name = tempfile.mkstemp(prefix=".lesionscan-", suffix=".bak.tmp", dir=target.parent)
    os.close(fd)
    try:
        if os.path.islink(target):
            os.unlink(name)
            os.symlink(os.readlink(target), name)
        else:
            shutil.copyfile(target, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def _move(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` in one step (both in one folder)."""
    os.replace(source, target)


def _make_folders(folder: Path, created: list[Path]) -> None:
    """Create ``folder`` and its missing parents, appending each to ``created`` as it is made (to undo)."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _undo(plan: list[list], moved: int, created: list[Path]) -> None:
    """Put everything back: old overlays restored, new ones and temporaries removed, created folders too."""
    for i, (tmp, target, backup) in enumerate(plan):
        with contextlib.suppress(OSError):
            if i >= moved:
                tmp.unlink()
            elif backup is not None:
                os.replace(backup, target)
            else:
                target.unlink()
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def write_all(files) -> None:
    """Write every ``(target, bytes)`` or none: all staged beside their targets first, then renamed in.

    Each file goes in as :func:`atomic_path` puts one (a temporary name in its
    folder, then one rename); :func:`atomic_path` renames as each file is done,
    so it cannot hold back the first until the last is written. Missing
    folders are created first; an existing target is copied aside until every
    rename has succeeded. Any failure (or Ctrl-C) undoes everything
    (:func:`_undo`); an OSError is raised as :class:`WriteAllError` naming the
    path. The same target given twice is written once.
    """
    unique = {Path(os.path.realpath(Path(target).parent)) / Path(target).name: (Path(target), data)
              for target, data in files}
    created, plan, moved, current = [], [], 0, None
    try:
        for target, data in unique.values():
            current = target
            _make_folders(target.parent, created)
            entry = [_stage(target.parent, data), target, None]
            plan.append(entry)
            if os.path.lexists(target):
                entry[2] = _backup(target)
        for tmp, target, _ in plan:
            current = target
            _move(tmp, target)
            moved += 1
    except BaseException as exc:
        _undo(plan, moved, created)
        if isinstance(exc, OSError):
            raise WriteAllError(current, exc.strerror or str(exc)) from exc
        raise
    for _, _, backup in plan:
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as CSV without its index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)
