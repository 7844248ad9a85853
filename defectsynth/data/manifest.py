"""One manifest format for every image list: real, synthetic and training.

A manifest is a CSV with one row per image. `parents` names the real images a synthetic one
was made from (separated by ';'), so every synthetic image can be traced back.
"""

from __future__ import annotations

import csv
import io
import json
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


def _whole_params(text: str) -> bool:
    """False for generator parameters that begin as a JSON object and do not end as one (cut short);
    anything else a hand-made manifest holds there is its own business."""
    if not text.lstrip().startswith("{"):
        return True
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def read_manifest(path: Path) -> list[Row]:
    path = Path(path)
    if not path.is_file():
        raise DefectsynthError(f"manifest {path} not found")
    damaged = ("; defectsynth writes it whole, so it was changed or cut short elsewhere: restore it, or delete it "
               "and re-run the command that wrote it")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DefectsynthError(f"{path}: not UTF-8 text (byte {e.start}){damaged}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = [c for c in ("path", "label", "split", "source") if c not in (reader.fieldnames or [])]
        if missing:
            raise DefectsynthError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        records = list(reader)
    except csv.Error as e:
        raise DefectsynthError(f"{path}: not a valid CSV ({e}){damaged}") from None
    # Every row we write ends with a newline: a last line without one that is short of fields, stops
    # inside a quoted field, or whose generator parameters are cut JSON (a cut between the two quotes of
    # an escaped "" leaves the quotes balanced) is a file cut short (a hand-made CSV may just lack the
    # final newline).
    if records and not text.endswith("\n") and (text.count('"') % 2 or None in records[-1].values()
                                                 or not _whole_params(records[-1].get("params") or "")):
        raise DefectsynthError(f"{path}: its last line (line {reader.line_num}) is incomplete{damaged}")
    return [Row(**{c: (r.get(c) or "") for c in COLUMNS}) for r in records]
