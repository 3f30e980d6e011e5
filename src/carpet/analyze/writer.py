"""The report writer: each table and figure to its file and to both reports (HTML and PDF)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from carpet.io.tables import write_csv

SIMULATED_BANNER = "SIMULATED DATA — not patients"


class _Writer:
    """Writes each table and figure to its file and to both reports (HTML and PDF)."""

    def __init__(self, out: Path, title: str, subtitle: str, simulated: bool):
        from carpet.report.html import Report
        from carpet.report.pdf import PdfReport

        self.out, self.simulated, self.files = out, simulated, {}
        banner = "SIMULATED" if simulated else ""
        self.html = Report(title, subtitle=(f"{SIMULATED_BANNER}. " if simulated else "") + subtitle)
        self.pdf = PdfReport(title, subtitle=self.html.subtitle, banner=banner,
                             metadata=({"Subject": "SIMULATED DATA (not patients)", "Keywords": "SIMULATED"}
                                       if simulated else {}))
        (out / "figures").mkdir(parents=True, exist_ok=True)

    def section(self, title: str) -> None:
        self.html.section(title)
        self.pdf.section(title)

    def text(self, text: str) -> None:
        self.html.text(text)
        self.pdf.text(text)

    def note(self, text: str) -> None:
        self.html.note(text)
        self.pdf.note(text)

    def table(self, df: pd.DataFrame, stem: str, caption: str, display: pd.DataFrame | None = None) -> str:
        """Write ``df`` to ``<stem>.csv`` and show it (or the more readable ``display``) in the reports."""
        path = self.out / f"{stem}.csv"
        with open(path, "w", encoding="utf-8", newline="") as fh:
            if self.simulated:
                fh.write(f"# {SIMULATED_BANNER}\n")
            write_csv(df, fh)
        self.files[path.name] = path
        shown = df if display is None else display
        self.html.table(shown, caption=f"{caption} ({path.name})")
        self.pdf.table(shown, caption=f"{caption} ({path.name})")
        return path.name

    def figure(self, fig, stem: str, caption: str) -> list[str]:
        if self.simulated:
            fig.text(0.995, 0.005, "SIMULATED", ha="right", va="bottom", fontsize=7, color="#D55E00",
                     fontweight="bold")
        import matplotlib.pyplot as plt

        names = []
        for ext in ("png", "pdf"):
            path = self.out / "figures" / f"{stem}.{ext}"
            fig.savefig(path, bbox_inches="tight")  # PNG at the journal style's 300 dpi
            self.files[f"figures/{path.name}"] = path
            names.append(f"figures/{path.name}")
        plt.close(fig)
        png = (self.out / "figures" / f"{stem}.png").read_bytes()
        self.pdf.image(png, caption)
        # The PNG just written goes into the HTML as is: Report.figure would draw the figure once more.
        self.html.image(png, caption)
        return names


def _jsonable(obj):
    """Plain JSON: numpy scalars as numbers, NaN/NA as null, dates as ISO text."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, (pd.Timestamp, np.datetime64)):
        return str(obj)
    return str(obj)
