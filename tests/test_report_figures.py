"""Figures a journal takes: legends off the data, axes to the end of follow-up, captions that say what is drawn."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from carpet.report.km_plot import km_figure, risk_times_to
from carpet.report.style import legend_overlaps_data, overlaps_data, save_figure


def _cohort(seed, n=60, groups=("No EMD at baseline", "EMD at baseline", "EMD+PMD", "PMD only")):
    rng = np.random.default_rng(seed)
    out = {}
    for k, g in enumerate(groups):
        t = rng.exponential(8 + 10 * k, n)
        c = rng.uniform(5, 35, n)
        out[g] = (np.minimum(t, c), (t <= c).astype(int))
    return out


@pytest.mark.parametrize("n_groups, seed", [(1, 0), (2, 1), (2, 2), (4, 3)])
def test_km_legend_never_covers_data(n_groups, seed):
    groups = dict(list(_cohort(seed).items())[:n_groups])
    fig, stats = km_figure(groups, title="PFS2 by baseline EMD", show_ci=n_groups <= 2)
    assert legend_overlaps_data(fig) == []
    assert stats["p_text"] is None if n_groups == 1 else stats["p_text"].startswith("log-rank p")
    plt.close(fig)


def test_overlap_check_can_fail():
    """The check itself: a legend forced onto the curves is reported."""
    fig, _ = km_figure(_cohort(0, groups=("a", "b")), show_ci=True)
    ax = fig.axes[0]
    ax.legend(["a", "b"], loc="center", fontsize=20)
    assert legend_overlaps_data(fig)
    from matplotlib.transforms import Bbox

    # every curve starts at S(0) = 1: a box there touches data, a box in the empty top-right corner does not
    assert overlaps_data(ax, Bbox(ax.transData.transform([[0, 0.99], [0.5, 1.0]])))
    assert not overlaps_data(ax, Bbox(ax.transData.transform([[33.0, 1.005], [34.0, 1.01]])))
    plt.close(fig)


def test_x_axis_reaches_end_of_follow_up_with_ticks_at_risk_times():
    groups = {"a": ([2.0, 10.0, 35.0], [1, 0, 0]), "b": ([5.0, 20.0, 30.0], [1, 1, 0])}
    fig, stats = km_figure(groups, risk_times=[0, 6, 12, 18, 24])
    ax, ax_risk = fig.axes[:2]
    assert stats["risk_times"] == [0, 6, 12, 18, 24, 30, 36]  # the axis ends at a tick past the last time
    assert list(ax.get_xticks()) == stats["risk_times"]
    assert ax.get_xlim()[1] >= 35.0
    assert sorted({t.get_position()[0] for t in ax_risk.texts}) == stats["risk_times"]
    np.testing.assert_array_equal(risk_times_to(None, 35.0), [0, 12, 24])
    plt.close(fig)


def test_axis_check_reports_a_km_axis_that_stops_before_the_curves():
    from carpet.report.style import x_axis_short_of_data

    groups = {"a": ([2.0, 10.0, 28.5], [1, 0, 0])}  # follow-up to 28.5, risk times every 6 months
    fig, stats = km_figure(groups, risk_times=[0, 6, 12, 18, 24])
    assert stats["risk_times"][-1] == 30 and x_axis_short_of_data(fig) == []
    fig.axes[0].set_xticks([0, 6, 12, 18, 24])  # the old figure: axis line to 29, last tick 24
    assert x_axis_short_of_data(fig) and "last tick 24" in x_axis_short_of_data(fig)[0]
    fig.axes[0].set_xlim(0, 20)
    assert "axis to 20" in x_axis_short_of_data(fig)[0]
    plt.close(fig)


def test_flowchart_boxes_never_touch_even_with_long_group_names():
    import pandas as pd

    from carpet.report.flowchart import box_overlaps, flowchart_figure

    for groups in (["cilta-cel", "ide-cel", "other BCMA CAR T"],
                   ["academic centre A", "academic centre B", "community hospital C", "community hospital D"]):
        counts = pd.DataFrame({"stage": ["treated", "progressed", "refractory", "relapsed"],
                               "all": [79, 79, 10, 69], **{g: [20, 20, 3, 17] for g in groups}})
        fig = flowchart_figure(counts)
        boxes = [t for t in fig.axes[0].texts if t.get_bbox_patch() is not None]
        assert len(boxes) == 4 and box_overlaps(boxes) == []
        assert all(f"{g} 3" in boxes[2].get_text().replace("\n", " ") for g in groups)  # no name split
        plt.close(fig)
    fig = flowchart_figure(counts)
    fig.axes[0].texts[3].set_x(0.3)  # the check itself: the relapsed box moved onto the refractory box
    assert box_overlaps(fig.axes[0].texts)
    plt.close(fig)


def test_caption_follows_what_is_drawn():
    groups = _cohort(4, groups=("a", "b", "c"))
    fig, with_band = km_figure(groups, show_ci=True)
    plt.close(fig)
    fig, without = km_figure(groups, show_ci=False, p_text="maxstat-adjusted p = 0.072")
    assert "95%" in with_band["caption"] and "95%" not in without["caption"]
    assert not fig.axes[0].collections  # no band drawn
    assert "maxstat-adjusted p = 0.072" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "log-rank" not in without["caption"]
    plt.close(fig)


def test_every_figure_written_as_print_png_and_vector(tmp_path):
    from PIL import Image

    fig, _ = km_figure(_cohort(5, groups=("a",)))
    paths = save_figure(fig, tmp_path / "km")
    plt.close(fig)
    assert [p.suffix for p in paths] == [".png", ".pdf", ".svg"]
    dpi = Image.open(paths[0]).info["dpi"]
    assert min(dpi) >= 299.5
    assert paths[1].read_bytes().startswith(b"%PDF") and b"/Subtype /Image" not in paths[1].read_bytes()
    assert "<svg" in paths[2].read_text()


def test_sankey_ribbons_carry_counts_and_row_percent():
    import pandas as pd

    from carpet.report.sankey import sankey_figure

    flows = pd.DataFrame({"source": ["None", "None", "EMD", "EMD"], "target": ["None", "EMD", "EMD", "None"],
                          "n": [35, 25, 6, 4]})
    fig = sankey_figure(flows, order=["None", "EMD"])
    texts = {t.get_text() for t in fig.axes[0].texts}
    # row % = share of the source state: 35 of the 60 with None at baseline stayed None
    assert {"→ None: 35 (58%)", "→ EMD: 25 (42%)", "→ EMD: 6 (60%)", "→ None: 4 (40%)"} <= texts
    plt.close(fig)


def test_mip_has_suv_scale_orientation_letters_and_excluded_regions():
    from carpet.report.mip import EXCLUDED_LABEL, informative_index, mip_figure
    from carpet.volume import Volume

    pet = Volume(np.zeros((10, 8, 12), np.float32), (4.0, 4.0, 4.0))
    pet.array[2:4, 2:4, 2:4] = 8.0
    pet.array[6:8, 4:6, 8:10] = 5.0
    labels = pet.with_array((pet.array == 8.0).astype(np.int32))
    excluded = pet.with_array((pet.array == 5.0).astype(np.uint8))
    fig = mip_figure(pet, labels, {1: "bone"}, excluded=excluded)
    coronal, sagittal, bar = fig.axes[:3]
    assert bar.get_ylabel() == "SUV (g/mL)"
    assert {t.get_text() for t in coronal.texts} == {"R", "L", "S", "I"}
    assert {t.get_text() for t in sagittal.texts} == {"A", "P", "S", "I"}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["bone", EXCLUDED_LABEL]
    assert len(coronal.collections) == 2  # lesion contour and excluded contour
    plt.close(fig)
    for shape in [(10, 8, 12), (40, 30, 12), (10, 8, 60)]:  # wide and tall bodies: images narrower than axes
        pet = Volume(np.zeros(shape, np.float32), (4.0, 4.0, 4.0))
        pet.array[2:4, 2:4, 2:4] = 8.0
        fig = mip_figure(pet, pet.with_array((pet.array == 8.0).astype(np.int32)), {1: "bone"}, title="S1")
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        panels = [ax.get_tightbbox(r) for ax in fig.axes[:2]]
        title, legend = fig._suptitle.get_window_extent(r), fig.legends[0].get_window_extent(r)
        gap_pt = [(title.y0 - max(p.y1 for p in panels)) * 72 / fig.dpi,
                  (min(p.y0 for p in panels) - legend.y1) * 72 / fig.dpi]
        assert all(0 <= g <= 12 for g in gap_pt), (shape, gap_pt)  # next to the images, not at the edges
        plt.close(fig)
    studies = [{"n_sites": 1, "n_lesions": 9, "mtv_ml": 80}, {"n_sites": 3, "n_lesions": 4, "mtv_ml": 20},
               {"n_sites": 3, "n_lesions": 5, "mtv_ml": 10}]
    assert informative_index(studies) == 2


@pytest.mark.parametrize("figsize", [(6.4, 3.8), (5.0, 2.6)])  # the default and a short figure
@pytest.mark.parametrize("table", [[[37, 17, 0, 3], [7, 15, 0, 0], [2, 1, 6, 0], [7, 6, 0, 0]],
                                   [[1, 1, 1, 1], [1, 2, 1, 3], [2, 1, 1, 1], [1, 1, 3, 2]]])
def test_sankey_labels_of_small_flows_never_overlap(table, figsize):
    import itertools

    import pandas as pd

    from carpet.report.sankey import sankey_figure

    order = ["None", "EMD", "PMD", "Both"]
    flows = pd.DataFrame([(order[i], order[j], n) for i, row in enumerate(table) for j, n in enumerate(row) if n],
                         columns=["source", "target", "n"])
    fig = sankey_figure(flows, order, left_title="Baseline", right_title="Progression", figsize=figsize)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.axes[0].texts if t.get_text()]
    row_n = flows.groupby("source")["n"].sum()
    expected = {f"→ {r.target}: {r.n} ({100 * r.n / row_n[r.source]:.0f}%)" for r in flows.itertuples()}
    assert expected <= {t.get_text() for t in texts}  # every flow keeps its label
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    clashes = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]
    assert clashes == []
    page = fig.bbox
    assert all(page.x0 <= bb.x0 and bb.x1 <= page.x1 and page.y0 <= bb.y0 and bb.y1 <= page.y1 for _, bb in boxes)
    plt.close(fig)
