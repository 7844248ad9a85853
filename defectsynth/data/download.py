"""Download MVTec AD and extract one category: resumable, sha256-verified, and safe to extract.

MVTec publishes one sha256 only for the whole archive (mvtec_anomaly_detection.tar.xz, 4.9 GiB;
the same URL and hash anomalib uses), so that is what we download; only the requested category is
extracted. The archive is kept in --root so other categories need no second download.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from defectsynth.errors import DefectsynthError

MVTEC_PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
ARCHIVE_NAME = "mvtec_anomaly_detection.tar.xz"
ARCHIVE_URL = ("https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/"
               "420938113-1629952094/mvtec_anomaly_detection.tar.xz")
ARCHIVE_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"
CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
              "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
# The whole archive keeps these at its top level; they travel into the category folder (CC BY-NC-SA 4.0).
LICENCE_FILES = ("license.txt", "readme.txt")
CHUNK = 1 << 20


def download(category: str, root: Path, archive: Path | None = None, sha256: str | None = None,
             verify: bool = True, progress: bool = True, say: Callable[[str], None] = print) -> Path:
    """Make sure <root>/<category> exists, downloading and/or extracting the archive as needed."""
    root = Path(root)
    if not category or category in (".", "..") or "/" in category or "\\" in category or "\0" in category:
        raise DefectsynthError(f"--category {category!r}: give a category name (a folder name such as transistor), "
                               "not a path; put the folder elsewhere with --root")
    target = root / category
    if archive is None and category not in CATEGORIES:
        raise DefectsynthError(f"--category {category}: not an MVTec AD category; choose one of "
                               f"{', '.join(CATEGORIES)} (or pass your own --archive FILE)")
    if sha256 is not None and not verify:
        raise DefectsynthError("--sha256 and --no-verify contradict each other; pass one of them")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise DefectsynthError(f"--sha256 {sha256}: expected 64 hexadecimal digits (the output of sha256sum)")
    if target.is_dir() and any(target.iterdir()):
        say(f"{target} already exists; nothing to do (delete it to extract again).")
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DefectsynthError(f"--root {root}: cannot create it ({e.strerror}); choose a writable folder") from e

    if archive is None:
        archive = root / ARCHIVE_NAME
        if not archive.is_file():
            fetch(ARCHIVE_URL, archive, category, root, progress=progress, say=say)
        verify_sha256(archive, ARCHIVE_SHA256, progress=progress, downloaded=True)
    else:
        archive = Path(archive)
        if not archive.is_file():
            raise DefectsynthError(f"--archive {archive}: file not found")
        if verify:
            verify_sha256(archive, (sha256 or ARCHIVE_SHA256).lower(), progress=progress, downloaded=False,
                          official=sha256 is None)
        else:
            say(f"Not verifying {archive} (--no-verify).")
    say(f"Extracting {category}/ from {archive} ...")
    extract_category(archive, category, root, progress=progress)
    return target


def offline_message(url: str, category: str, root: Path, reason: object) -> str:
    return (f"cannot reach {urlparse(url).netloc} ({reason}); download MVTec AD by hand from {MVTEC_PAGE} "
            f"(the whole {ARCHIVE_NAME}, or {category}.tar.xz), then run 'defectsynth data download "
            f"--category {category} --root {root} --archive FILE' (add --no-verify for {category}.tar.xz, "
            f"whose checksum defectsynth does not know), or unpack it yourself so that "
            f"{root / category / 'train' / 'good'} exists")


def fetch(url: str, dest: Path, category: str, root: Path, progress: bool = True,
          say: Callable[[str], None] = print) -> None:
    """Download `url` to `dest` through `dest`.part, resuming a partial download with an HTTP Range request."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "defectsynth"}
    if have:
        headers["Range"] = f"bytes={have}-"
    say(f"{'Resuming' if have else 'Downloading'} {url}\n  to {part}")
    try:
        response = urlopen(Request(url, headers=headers), timeout=60)
    except HTTPError as e:
        if e.code == 416 and have:  # the part file is already complete
            os.replace(part, dest)
            return
        raise DefectsynthError(f"{url}: HTTP {e.code} {e.reason}; try again later, or download it by hand from "
                               f"{MVTEC_PAGE} and pass --archive FILE") from e
    except OSError as e:  # URLError, socket timeouts and resets are all OSErrors
        raise DefectsynthError(offline_message(url, category, root, getattr(e, "reason", e))) from e

    with response:
        if have and getattr(response, "status", None) != 206:
            have = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        try:
            with part.open("ab" if have else "wb") as f, _progress(progress) as bar:
                task = bar.add_task("download", total=total, completed=have)
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.advance(task, len(chunk))
        except OSError as e:
            size = part.stat().st_size if part.is_file() else 0
            raise DefectsynthError(f"download interrupted after {size / 2**20:.0f} MiB ({e}); run the same "
                                   f"command again to resume from {part}") from e
    if total is not None and part.stat().st_size != total:
        raise DefectsynthError(f"download of {url} ended early ({part.stat().st_size} of {total} bytes); run "
                               f"the same command again to resume from {part}")
    os.replace(part, dest)


def sha256_of(path: Path, progress: bool = True) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f, _progress(progress) as bar:
        task = bar.add_task("sha256", total=path.stat().st_size)
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.advance(task, len(chunk))
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, progress: bool = True, downloaded: bool = False,
                  official: bool = True) -> None:
    """Raise unless `path` has sha256 `expected`. A bad download is removed; a user's own file is kept."""
    actual = sha256_of(path, progress)
    if actual == expected:
        return
    if downloaded:
        path.unlink()
        raise DefectsynthError(f"{path}: sha256 {actual} does not match the official {expected}; the file was "
                               f"removed and nothing was extracted; run the command again to download it anew")
    if official:
        raise DefectsynthError(f"--archive {path}: sha256 {actual} is not the official {ARCHIVE_NAME} "
                               f"({expected}); nothing was extracted; for a per-category or your own archive "
                               f"pass --sha256 HEX from its source, or --no-verify")
    raise DefectsynthError(f"--archive {path}: sha256 {actual} does not match --sha256 {expected}; nothing was "
                           f"extracted; check the file (or the checksum) and try again")


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` could write outside the target folder (or make a device), else None."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or (len(member.name) > 1 and member.name[1] == ":"):
        return "absolute path"
    if ".." in name.parts:
        return "'..' in its path"
    if member.isdev():
        return "device or fifo"
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        # A symlink resolves from its own folder; a hard link names a member from the archive's root.
        resolved = (name.parent / link) if member.issym() else link
        depth = 0
        for part in resolved.parts if not link.is_absolute() else ("..",):
            depth += -1 if part == ".." else (0 if part == "." else 1)
            if depth < 0:
                return f"link to {member.linkname} outside the archive folder"
    return None


def extract_category(archive: Path, category: str, root: Path, progress: bool = True) -> None:
    """Extract <category>/ from `archive` into a temp folder in `root`, then rename it to <root>/<category>.

    The archive is read as a stream, once: every member is checked (any unsafe member refuses the whole
    archive), and only the category's members (plus MVTec's top-level licence files) are written.
    """
    target = root / category
    tmp = Path(tempfile.mkdtemp(prefix=f".{category}.extract-", dir=root))
    try:
        extracted = 0
        with archive.open("rb") as raw, _progress(progress) as bar:
            task = bar.add_task("extract", total=archive.stat().st_size)
            with tarfile.open(fileobj=_Counting(raw, lambda n: bar.advance(task, n)), mode="r|*") as tar:
                for member in tar:
                    reason = unsafe_reason(member)
                    if reason:
                        raise DefectsynthError(f"{archive}: unsafe member {member.name!r} ({reason}); refusing "
                                               f"this archive, nothing was extracted")
                    parts = PurePosixPath(member.name).parts
                    parts = parts[1:] if parts[:1] == (".",) else parts
                    if parts[:1] == (category,):
                        _extract(tar, member, tmp, archive)
                        extracted += member.isfile()
                    elif len(parts) == 1 and parts[0] in LICENCE_FILES and member.isfile():
                        (tmp / category).mkdir(exist_ok=True)
                        with tar.extractfile(member) as src, (tmp / category / parts[0]).open("wb") as dst:
                            shutil.copyfileobj(src, dst)
        if not extracted:
            raise DefectsynthError(f"{archive}: no {category}/ folder inside; pass the archive of this category "
                                   f"(or of the whole MVTec AD), or the matching --category")
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # an empty folder left by hand: take its place
        if target.exists():
            raise DefectsynthError(f"{target} appeared while extracting; remove it and run again")
        os.replace(tmp / category, target)
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as e:
        raise DefectsynthError(f"{archive}: truncated or not a tar archive ({e}); download it again") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    try:
        if hasattr(tarfile, "data_filter"):
            tar.extract(member, dest, filter="data")
        else:
            tar.extract(member, dest)
    except tarfile.FilterError as e:
        raise DefectsynthError(f"{archive}: unsafe member {member.name!r} ({e}); refusing this archive, "
                               f"nothing was extracted") from e


class _Counting:
    """A read-only file wrapper reporting how many compressed bytes were consumed (for the progress bar)."""

    def __init__(self, raw, on_read: Callable[[int], None]):
        self.raw, self.on_read = raw, on_read

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.on_read(len(data))
        return data


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), disable=not enabled)
