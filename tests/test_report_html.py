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
