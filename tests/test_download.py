"""Download and extraction on tiny archives the tests build: checksums, path traversal, offline, resume."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from typer.testing import CliRunner

from defectsynth.cli import app
from defectsynth.data import download as dl
from defectsynth.errors import DefectsynthError
from defectsynth.io import write_png


def make_category(folder: Path) -> Path:
    """A minimal MVTec-layout category: 2 train/good, 1 test/good, 1 bent_lead with its mask."""
    rng = np.random.default_rng(0)
    for rel in ("train/good/000.png", "train/good/001.png", "test/good/000.png", "test/bent_lead/000.png"):
        write_png(folder / rel, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    write_png(folder / "ground_truth/bent_lead/000_mask.png", mask)
    return folder


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def make_archive(tmp_path: Path, extra=None, name: str = "mvtec.tar.xz") -> Path:
    """A tar.xz shaped like MVTec's whole archive: <category>/... plus license.txt at the top."""
    category = make_category(tmp_path / "src" / "transistor")
    archive = tmp_path / name
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(category, arcname="transistor")
        add_bytes(tar, "license.txt", b"CC BY-NC-SA 4.0\n")
        make_category(tmp_path / "src" / "bottle")
        tar.add(tmp_path / "src" / "bottle", arcname="bottle")
        if extra:
            extra(tar)
    return archive


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quiet(_msg: str) -> None:
    pass


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_good_archive_extracts_only_the_category(tmp_path):
    archive = make_archive(tmp_path)
    root = tmp_path / "data"
    (root / "transistor").mkdir(parents=True)  # an empty folder is taken over
    out = dl.download("transistor", root, archive=archive, sha256=sha256(archive), progress=False, say=quiet)
    assert out == root / "transistor"
    assert (out / "train/good/001.png").is_file() and (out / "ground_truth/bent_lead/000_mask.png").is_file()
    assert (out / "license.txt").read_text() == "CC BY-NC-SA 4.0\n"
    assert leftovers(root) == ["transistor"]  # no bottle/, no temp folder
    # Re-running is safe and does nothing.
    assert dl.download("transistor", root, archive=archive, sha256=sha256(archive), progress=False, say=quiet) == out


def test_official_checksum_is_checked_for_archive_on_disk(tmp_path, monkeypatch):
    archive = make_archive(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(DefectsynthError, match="not the official mvtec_anomaly_detection.tar.xz.*--no-verify"):
        dl.download("transistor", root, archive=archive, progress=False, say=quiet)
    assert archive.is_file() and leftovers(root) == []  # the user's file is kept, nothing extracted
    monkeypatch.setattr(dl, "ARCHIVE_SHA256", sha256(archive))
    assert (dl.download("transistor", root, archive=archive, progress=False, say=quiet) / "train/good").is_dir()


def test_wrong_sha256_is_refused_and_no_verify_is_allowed(tmp_path):
    archive = make_archive(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(DefectsynthError, match="does not match --sha256 0000.*nothing was extracted"):
        dl.download("transistor", root, archive=archive, sha256="0" * 64, progress=False, say=quiet)
    assert leftovers(root) == []
    dl.download("transistor", root, archive=archive, verify=False, progress=False, say=quiet)
    assert (root / "transistor/test/bent_lead/000.png").is_file()


def test_downloaded_archive_with_wrong_checksum_is_removed(tmp_path, monkeypatch):
    archive = make_archive(tmp_path)
    root = tmp_path / "data"
    monkeypatch.setattr(dl, "ARCHIVE_URL", archive.as_uri())
    monkeypatch.setattr(dl, "ARCHIVE_SHA256", "f" * 64)
    with pytest.raises(DefectsynthError, match="does not match the official .* removed and nothing was extracted"):
        dl.download("transistor", root, progress=False, say=quiet)
    assert leftovers(root) == []


def test_download_verifies_and_keeps_the_archive(tmp_path, monkeypatch):
    archive = make_archive(tmp_path)
    root = tmp_path / "data"
    monkeypatch.setattr(dl, "ARCHIVE_URL", archive.as_uri())
    monkeypatch.setattr(dl, "ARCHIVE_SHA256", sha256(archive))
    dl.download("transistor", root, progress=False, say=quiet)
    assert leftovers(root) == [dl.ARCHIVE_NAME, "transistor"]
    dl.download("bottle", root, progress=False, say=quiet)  # second category: no second download
    assert (root / "bottle/train/good/000.png").is_file()


@pytest.mark.parametrize("member, why", [
    (lambda tar: add_bytes(tar, "transistor/../../evil.txt", b"x"), "'..' in its path"),
    (lambda tar: add_bytes(tar, "/tmp/defectsynth-evil.txt", b"x"), "absolute path"),
    (lambda tar: add_bytes(tar, "transistor/link", b"", type=tarfile.SYMTYPE, linkname="../../evil.txt"),
     "outside the archive folder"),
    (lambda tar: add_bytes(tar, "transistor/hard", b"", type=tarfile.LNKTYPE, linkname="../evil.txt"),
     "outside the archive folder"),
    (lambda tar: add_bytes(tar, "transistor/dev", b"", type=tarfile.CHRTYPE), "device"),
])
def test_unsafe_member_refuses_the_archive(tmp_path, member, why):
    archive = make_archive(tmp_path, extra=member)
    root = tmp_path / "deep" / "data"
    with pytest.raises(DefectsynthError, match=f"unsafe member .*{why}.*nothing was extracted"):
        dl.download("transistor", root, archive=archive, verify=False, progress=False, say=quiet)
    assert leftovers(root) == []  # the partly extracted temp folder is gone, no transistor/
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not Path("/tmp/defectsynth-evil.txt").exists()


def test_truncated_archive_and_missing_category(tmp_path):
    archive = make_archive(tmp_path)
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DefectsynthError, match="truncated or not a tar archive"):
        dl.download("transistor", tmp_path / "a", archive=cut, verify=False, progress=False, say=quiet)
    with pytest.raises(DefectsynthError, match="no cable/ folder inside"):
        dl.download("cable", tmp_path / "b", archive=archive, verify=False, progress=False, say=quiet)
    assert leftovers(tmp_path / "a") == leftovers(tmp_path / "b") == []


def test_offline_prints_where_to_download_by_hand(tmp_path, monkeypatch):
    def offline(*_args, **_kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(dl, "urlopen", offline)
    result = CliRunner().invoke(app, ["data", "download", "--category", "transistor", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "cannot reach www.mydrive.ch" in text and dl.MVTEC_PAGE in text and "--archive FILE" in text


def test_cli_extracts_an_archive_on_disk(tmp_path):
    archive = make_archive(tmp_path)
    root = tmp_path / "data"
    result = CliRunner().invoke(app, ["data", "download", "--root", str(root), "--archive", str(archive),
                                      "--sha256", sha256(archive)])
    assert result.exit_code == 0, result.output
    assert (root / "transistor/train/good/000.png").is_file()


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, status: int):
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(len(data))}


@pytest.mark.parametrize("honours_range", [True, False])
def test_download_resumes_from_the_part_file(tmp_path, monkeypatch, honours_range):
    archive = make_archive(tmp_path)
    full = archive.read_bytes()
    root = tmp_path / "data"
    root.mkdir()
    (root / (dl.ARCHIVE_NAME + ".part")).write_bytes(full[:1000])
    asked = []

    def server(request, timeout):
        asked.append(request.get_header("Range"))
        if honours_range:
            return FakeResponse(full[1000:], 206)
        return FakeResponse(full, 200)

    monkeypatch.setattr(dl, "urlopen", server)
    monkeypatch.setattr(dl, "ARCHIVE_SHA256", sha256(archive))
    dl.download("transistor", root, progress=False, say=quiet)
    assert asked == ["bytes=1000-"]
    assert (root / dl.ARCHIVE_NAME).read_bytes() == full
    assert (root / "transistor/train/good/000.png").is_file()


def test_interrupted_download_keeps_the_part_file(tmp_path, monkeypatch):
    class Broken(FakeResponse):
        def read(self, size=-1):
            if self.tell() >= 500:
                raise TimeoutError("timed out")
            return super().read(min(size, 500))

    monkeypatch.setattr(dl, "urlopen", lambda request, timeout: Broken(b"x" * 2000, 200))
    with pytest.raises(DefectsynthError, match="interrupted .* run the same command again to resume"):
        dl.download("transistor", tmp_path, progress=False, say=quiet)
    assert (tmp_path / (dl.ARCHIVE_NAME + ".part")).stat().st_size == 500
