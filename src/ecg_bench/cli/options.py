"""The configs of the commands whose options are a component's (imported only when such a command is parsed: they
import the component's module)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ecg_bench.evaluation.report import ReportOptions
from ecg_bench.representations.image import ImageSettings


@dataclass
class ReportCommand:
    """``ecg-bench report RUN... [--out DIR] [--report.OPTION VALUE ...]``."""

    runs: list[str] = field(default_factory=list)
    """Run folders (holding results.json), results.json files, or folders searched for them (a sweep's folder)."""
    out: str = ""
    """Report folder (default: RUN/report for one folder of runs, else ./report); a report folder made before is
    replaced, any other non-empty folder refused."""
    report: ReportOptions = field(default_factory=ReportOptions)
    """What the report shows and how its intervals are computed."""


@dataclass
class RenderCommand(ImageSettings):
    """``ecg-bench render --store DIR --index N --out FILE``, with the image representation's options."""

    store: str = ""
    """Segment store folder (e.g. runs/ptbxl/store)."""
    index: int = 0
    """Segment index in the store (0-based)."""
    out: str = ""
    """PNG file to write (never overwritten)."""

    def problems(self) -> list[str]:
        p = [f"render needs --{k}" for k in ("store", "out") if not getattr(self, k)]
        if self.out and Path(self.out).suffix.lower() != ".png":
            p.append(f"--out {self.out}: expected a .png file name")
        return p + super().problems()
