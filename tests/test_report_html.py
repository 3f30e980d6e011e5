import numpy as np

from carpet.report.html import Report
from carpet.report.mip import mip_figure
from carpet.volume import Volume


def test_report_is_self_contained_and_escapes_text(tmp_path):
    vol = Volume(np.zeros((10, 8, 12), np.float32), (4.0, 4.0, 4.0))
    vol.array[3:5, 3:5, 4:6] = 8.0
    labels = vol.with_array((vol.array > 4).astype(np.int32))
    import pandas as pd

    r = Report("Demo <report>", subtitle="simulated")
    r.section("Imaging").text("MTV < 10 mL & SUVmax > 4").figure(mip_figure(vol, labels, {1: "bone"}), "MIP")
    r.table(pd.DataFrame({"lesion_id": [1], "volume_ml": [0.512]}), caption="Lesions")
    r.provenance = {"carpet_version": "x", "method": "suv4"}
    path = r.write(tmp_path / "index.html")
    text = path.read_text()
    assert "Demo &lt;report&gt;" in text
    assert "MTV &lt; 10 mL &amp; SUVmax &gt; 4" in text
    assert text.count("data:image/png;base64,") == 1
    assert "<td>0.512</td>" in text
    assert '"method": "suv4"' in text
    # self-contained: no external resources
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_mip_shows_head_up_and_legends_every_site():
    """Coronal view: a hot voxel at (i=2, j=6, k=10) is drawn at column i, row k with rows counted from
    the bottom (origin 'lower', so superior is up); the sagittal view puts it at column j. A site name
    outside the colour table is drawn and listed, not an error."""
    import matplotlib.pyplot as plt

    vol = Volume(np.zeros((10, 8, 12), np.float32), (4.0, 4.0, 4.0))
    vol.array[2, 6, 10] = 9.0
    vol.array[5, 1, 1] = 3.0
    labels = vol.with_array((vol.array > 0).astype(np.int32) * [[[1]]])
    labels.array[5, 1, 1] = 2
    fig = mip_figure(vol, labels, {1: "paramedullary", 2: "soft tissue?"})
    coronal, sagittal = (ax.images[0] for ax in fig.axes[:2])
    assert coronal.origin == "lower" and coronal.get_array()[10, 2] == 9.0 and coronal.get_array()[1, 5] == 3.0
    assert sagittal.get_array()[10, 6] == 9.0 and sagittal.get_array().shape == (12, 8)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["paramedullary", "soft tissue?"]
    plt.close(fig)


def test_figures_embed_as_vector_svg_unless_raster_or_larger(tmp_path):
    """A KM figure goes in as SVG (text as paths: the same on every machine), smaller than the 300 dpi PNG it
    replaces; a MIP (raster pixels) and a figure whose SVG would be much larger than its PNG go in as PNG,
    sized to print at 300 dpi. The page stays self-contained (no URL at all, not even SVG namespaces)."""
    import base64
    import io

    import matplotlib.pyplot as plt

    from carpet.report.html import SCREEN_SCALE, figure_src
    from carpet.report.km_plot import km_figure

    rng = np.random.default_rng(0)
    fig, _ = km_figure({"a": (rng.exponential(10, 60), rng.integers(0, 2, 60))}, title="PFS")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=300, bbox_inches="tight")
    src, width = figure_src(fig, png.getvalue())
    assert src.startswith("data:image/svg+xml,") and "%3Cpath" in src and "%3Ctext" not in src
    assert len(src) < len(base64.b64encode(png.getvalue()))
    assert abs(width - fig.get_size_inches()[0] * 96 * SCREEN_SCALE) < 0.25 * width  # print size × scale
    dense, ax = plt.subplots()
    ax.plot(rng.uniform(size=40000), rng.uniform(size=40000), ".", ms=1)
    assert figure_src(dense)[0].startswith("data:image/png;base64,")
    plt.close("all")
    vol = Volume(np.zeros((10, 8, 12), np.float32), (4.0, 4.0, 4.0))
    vol.array[3:5, 3:5, 4:6] = 8.0
    r = Report("Figures").figure(mip_figure(vol, vol.with_array((vol.array > 4).astype(np.int32)), {1: "bone"}))
    fig, _ = km_figure({"a": (rng.exponential(10, 60), rng.integers(0, 2, 60))})
    text = r.figure(fig, "KM").write(tmp_path / "r.html").read_text()
    assert text.count("data:image/png;base64,") == 1 and text.count("data:image/svg+xml,") == 1
    assert "http:" not in text and "https:" not in text and text.count('style="width: ') == 2
