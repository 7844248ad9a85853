"""The leakage guard: the one place that keeps held-out real images out of generators,
rebalancing and training. Every later step calls `check_no_leakage` on what it consumes.

A path is compared as a file, not as a string: `test/cut_lead/./009.png`, a symlink, a hard link or a
byte copy of a held-out image is that held-out image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from defectsynth.data.manifest import Row
from defectsynth.data.split import Split
from defectsynth.errors import LeakageError


class HeldOut:
    """Finds which held-out image a path is: by real path, by file identity (device and inode), and,
    for a copy, by content. Only files whose size equals a held-out image's are hashed, and each
    held-out image at most once, so a guard call costs one stat() per distinct path."""

    def __init__(self, split: Split):
        self._by_name: dict[str, str] = {}
        self._by_inode: dict[tuple[int, int], str] = {}
        self._by_size: dict[int, list[str]] = {}
        self._digests: dict[str, bytes] = {}  # held-out path -> content hash, filled on demand
        self._seen: dict[str, str | None] = {}  # parents repeat across rows
        for path in split.heldout_paths():
            self._by_name[path] = path
            self._by_name[os.path.realpath(path)] = path
            try:
                st = os.stat(path)
            except OSError:
                continue
            self._by_inode[(st.st_dev, st.st_ino)] = path
            self._by_size.setdefault(st.st_size, []).append(path)

    def find(self, path: str) -> str | None:
        """The held-out image `path` is, or None."""
        if path not in self._seen:
            self._seen[path] = self._find(path)
        return self._seen[path]

    def _find(self, path: str) -> str | None:
        found = self._by_name.get(path) or self._by_name.get(os.path.realpath(path))
        if found is not None:
            return found
        try:
            st = os.stat(path)
        except OSError:
            return None  # no such file: nothing to train on, and nothing the guard can compare
        found = self._by_inode.get((st.st_dev, st.st_ino))
        if found is not None or st.st_size not in self._by_size:
            return found
        digest = _digest(path)
        for held in self._by_size[st.st_size]:
            if held not in self._digests:
                self._digests[held] = _digest(held)
            if self._digests[held] == digest:
                return held
        return None


def _digest(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").digest()
    except OSError:
        return None


def check_no_leakage(rows: Iterable[Row], split: Split, where: str) -> list[Row]:
    """Return `rows` unchanged, or raise if any row is, or was made from, a held-out image."""
    rows = list(rows)
    heldout = HeldOut(split)
    for row in rows:
        held = heldout.find(row.path)
        if held is not None:
            same = "" if held == row.path else f" (the same file as held-out {held})"
            raise LeakageError(f"{where}: held-out image {row.path}{same} must not be used; "
                               "it is in the test split of split.json")
        leaked = [h for h in map(heldout.find, row.parent_paths) if h is not None]
        if leaked:
            raise LeakageError(f"{where}: {row.path} was made from held-out image {leaked[0]}; "
                               "regenerate it from the current split ('defectsynth generate')")
    return rows


def train_rows(split: Split, where: str) -> list[Row]:
    """The real images a generator or a training run may use."""
    return check_no_leakage(split.real_rows("train"), split, where)
