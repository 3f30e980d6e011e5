"""One journal look for every carpet figure (matplotlib, no seaborn).

Colour-blind-safe palette (Okabe–Ito), sans-serif 8–9 pt, no top/right spines, 300 dpi PNG.
"""

from __future__ import annotations

import io
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")  # reports are written headless; never open a window
import matplotlib.pyplot as plt  # noqa: E402

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.labelsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "xtick.direction": "out",
    "ytick.direction": "out",
    "legend.frameon": False,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType so journals accept the PDF
    "text.parse_math": False,  # user text ('Gain of $x^{2$') is text, never mathtext that can fail to parse
}


@contextmanager
def journal_style():
    """Context manager applying carpet's figure style."""
    with plt.rc_context(RC):
        yield


def figure_png_bytes(fig, dpi: int = 200) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
