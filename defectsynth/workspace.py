"""The workspace: every file a command reads or writes, in one place.

    <work>/split.json
    <work>/synthetic/<class>/<method>/*.png (+ *_mask.png), <work>/synthetic/synthetic.csv
    <work>/training/<name>.csv (+ <name>.json)
    <work>/reports/<run>/report.md, metrics.json, figures/*.png
    <work>/models/<method>/
    <work>/cache/
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from defectsynth.data.layout import missing_data_message
from defectsynth.data.split import Split, check_split, load_split, make_split, save_split
from defectsynth.errors import DefectsynthError

DEFAULT_DATA = Path("data/transistor")


def default_data() -> Path:
    return Path(os.environ.get("DEFECTSYNTH_DATA", DEFAULT_DATA))


@dataclass(frozen=True)
class Workspace:
    data: Path
    root: Path

    @classmethod
    def open(cls, data: Path | None = None, work: Path | None = None) -> Workspace:
        data = Path(data) if data is not None else default_data()
        if not data.is_dir():
            raise DefectsynthError(missing_data_message(data))
        data = data.resolve()
        root = Path(work) if work is not None else Path("runs") / data.name
        if root.exists() and not root.is_dir():
            raise DefectsynthError(f"--work {root} is a file; pass a folder")
        return cls(data, root.resolve())

    @property
    def category(self) -> str:
        return self.data.name

    @property
    def split_json(self) -> Path:
        return self.root / "split.json"

    @property
    def synthetic_csv(self) -> Path:
        return self.root / "synthetic" / "synthetic.csv"

    def synthetic_dir(self, label: str, method: str) -> Path:
        return self.root / "synthetic" / label / method

    def training_csv(self, name: str) -> Path:
        return self.root / "training" / f"{name}.csv"

    def report_dir(self, run: str) -> Path:
        return self.root / "reports" / run

    def model_dir(self, method: str) -> Path:
        return self.root / "models" / method

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def split(self, say: Callable[[str], None] = print) -> Split:
        """The workspace's split, made with the default protocol (and announced) when there is none."""
        if not self.split_json.exists():
            split = make_split(self.data)
            save_split(split, self.split_json)
            say(f"No split yet: wrote {self.split_json} (first {split.shots} real defects per type for "
                "training, the rest held out). Run 'defectsynth split' to choose another.")
            return split
        split = load_split(self.split_json)
        if split.data_root != self.data:
            raise DefectsynthError(f"{self.split_json} was made for {split.data_root}, not {self.data}; "
                                   "pass that --data, another --work, or re-run 'defectsynth split'")
        check_split(split, self.split_json)
        return split
