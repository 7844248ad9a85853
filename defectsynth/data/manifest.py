"""One manifest format for every image list: real, synthetic and training.

A manifest is a CSV with one row per image. `parents` names the real images a synthetic one
was made from (separated by ';'), so every synthetic image can be traced back.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from defectsynth.errors import DefectsynthError
from defectsynth.io import write_text


@dataclass(frozen=True)
class Row:
    path: str  # absolute path of the image
    label: str  # "good" or a defect type
    split: str  # "train" or "test"
    source: str  # "real" or "synthetic"
    method: str  # "real", or the generator's name
    parents: str = ""  # ';'-separated absolute paths of the real images it came from
    mask: str = ""  # absolute path of the mask, "" for good images
    seed: str = ""  # the seed that made it (synthetic rows)
    params: str = ""  # JSON of the generator parameters (synthetic rows)

    @property
    def parent_paths(self) -> list[str]:
        return [p for p in self.parents.split(";") if p]


COLUMNS = [f.name for f in fields(Row)]


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buf.getvalue()


def write_manifest(path: Path, rows: list[Row]) -> None:
    write_text(Path(path), to_csv(rows))


def read_manifest(path: Path) -> list[Row]:
    path = Path(path)
    if not path.is_file():
        raise DefectsynthError(f"manifest {path} not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("path", "label", "split", "source") if c not in (reader.fieldnames or [])]
        if missing:
            raise DefectsynthError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        return [Row(**{c: (r.get(c) or "") for c in COLUMNS}) for r in reader]
