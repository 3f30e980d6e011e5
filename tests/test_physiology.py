"""Physiological uptake rules (carpet.anatomy.physiology): a synthetic patient whose organs and lesions are
known by construction, each rule at its edge, and the one real whole-body FDG scan (TCIA STS_001).

The synthetic patient (4 mm voxels, LPS, head up): an elliptic trunk 340 × 220 mm (SUV 1), a narrower head
above a neck, brain (SUV 8), a myocardial shell around a cold cavity on the left-anterior side (SUV 6),
two kidneys posterior-lateral (SUV 6) and the bladder (SUV 40) on the mid-line at the caudal end. Truth is
the construction: which component is which organ and which is a lesion.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from carpet.anatomy.landmarks import body_landmarks
from carpet.anatomy.physiology import RULES_VERSION, PhysiologyParams, find_physiology
from carpet.segment import label_components
from carpet.volume import Volume

SP = (4.0, 4.0, 4.0)
SHAPE = (100, 70, 240)                       # 400 × 280 × 960 mm
ORIGIN = (-198.0, -138.0, 0.0)               # x, y centred on 0; z from 0 (feet side) to 956 (vertex)


def _grid():
    i, j, k = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    return ORIGIN[0] + SP[0] * i, ORIGIN[1] + SP[1] * j, ORIGIN[2] + SP[2] * k


def _ellipsoid(c, r):
    x, y, z = _grid()
    return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0


def _ball(c, r):
    return _ellipsoid(c, (r, r, r))


HEART = ((50.0, -40.0, 560.0), 45.0, 25.0)   # centre, outer and inner radius (mm)
KIDNEYS = (((-80.0, 45.0, 400.0), (28.0, 25.0, 55.0)), ((80.0, 45.0, 395.0), (28.0, 25.0, 55.0)))
BLADDER = ((0.0, -30.0, 130.0), 35.0)
BRAIN = ((0.0, 0.0, 870.0), (60.0, 75.0, 55.0))


def patient(organs=("brain", "myocardium", "kidney", "bladder"), lesions=(), heart_suv=6.0, bladder_suv=40.0,
            fwhm_mm=0.0):
    """(pet Volume, {name: mask}) of the synthetic patient; ``lesions``: (centre, radius, suv) balls;
    ``fwhm_mm``: Gaussian PSF."""
    x, y, z = _grid()
    trunk = ((x / 170.0) ** 2 + (y / 110.0) ** 2 <= 1.0) & (z <= 700)
    neck = ((x / 55.0) ** 2 + (y / 55.0) ** 2 <= 1.0) & (z > 700) & (z <= 780)
    head = _ellipsoid((0.0, 0.0, 860.0), (80.0, 100.0, 95.0))
    a = np.zeros(SHAPE, np.float32)
    a[trunk | neck | head] = 1.0
    truth = {}
    if "brain" in organs:
        truth["brain"] = _ellipsoid(*BRAIN)
    if "myocardium" in organs:
        c, ro, ri = HEART
        truth["myocardium"] = _ball(c, ro) & ~_ball(c, ri)
    if "kidney" in organs:
        truth["kidney"] = _ellipsoid(*KIDNEYS[0]) | _ellipsoid(*KIDNEYS[1])
    if "bladder" in organs:
        truth["bladder"] = _ball(*BLADDER)
    suv = {"brain": 8.0, "myocardium": heart_suv, "kidney": 6.0, "bladder": bladder_suv}
    for name, m in truth.items():
        a[m] = suv[name]
    for k, (c, r, s) in enumerate(lesions):
        m = _ball(c, r)
        a[m] = s
        truth[f"lesion{k}"] = m
    if fwhm_mm:
        from scipy import ndimage

        a = ndimage.gaussian_filter(a, fwhm_mm / 2.3548 / SP[0]).astype(np.float32)
    return Volume(a, SP, ORIGIN), truth


def _run(pet, params=PhysiologyParams()):
    labels = label_components(np.asarray(pet.array) >= 4.0, pet.spacing)
    return labels, find_physiology(pet, labels, params=params)


def _organ_mask(result, organ):
    ids = result.table.loc[result.table.organ == organ, "component_id"]
    return np.isin(result.excluded, list(ids))


# ---------------------------------------------------------------------------------------------
# landmarks
# ---------------------------------------------------------------------------------------------
def test_body_landmarks_find_the_head_and_the_trunk_centre():
    pet, _ = patient()
    lm = body_landmarks(pet)
    head_z = lm.z_mm[lm.head]
    assert head_z.min() == pytest.approx(700, abs=12) and head_z.max() >= 940      # neck and head
    trunk = lm.has_body & ~lm.head
    assert np.allclose(lm.trunk_x_mm[trunk], 0.0, atol=4.0) and np.allclose(lm.trunk_y_mm[trunk], 0.0, atol=4.0)
    assert np.allclose(lm.trunk_width_mm[trunk], 340, atol=16)


def test_no_head_when_the_field_of_view_starts_at_the_thorax():
    pet, _ = patient()
    cut = Volume(np.asarray(pet.array)[:, :, :160], SP, ORIGIN)                     # z < 640 mm
    assert not body_landmarks(cut).head.any()


# ---------------------------------------------------------------------------------------------
# the four organs, and nothing else
# ---------------------------------------------------------------------------------------------
def test_every_organ_is_excluded_whole_and_named():
    pet, truth = patient()
    labels, res = _run(pet)
    assert res.labels.max() == 0 and not res.review
    for organ in ("brain", "myocardium", "kidney", "bladder"):
        assert np.array_equal(_organ_mask(res, organ), truth[organ]), organ
    assert res.landmarks == {"body": True, "body_length_mm": pytest.approx(952, abs=10), "head": True,
                             "brain": True, "myocardium": True, "kidney": True, "bladder": True,
                             "renal_pelvis": False, "ureter": False, "salivary_gland": False, "tonsil": False,
                             "larynx_pharynx": False, "injection_site": False, "not_looked_for": {}}
    t = res.table.set_index("organ")
    assert t.loc["bladder", "suv_max"] == pytest.approx(40.0)
    assert t.loc["bladder", "volume_ml"] == pytest.approx(truth["bladder"].sum() * 0.064)
    assert res.provenance["ruleset"] == RULES_VERSION and res.provenance["thresholds"]["bladder_contrast"] == 2.0


@pytest.mark.parametrize("lesion", [
    ((-90.0, -20.0, 560.0), 12.0, 9.0),       # right lung / mediastinum, heart's level
    ((0.0, 60.0, 300.0), 12.0, 7.0),          # paraspinal, mid-line posterior (not bladder, not kidney)
    ((110.0, -60.0, 120.0), 10.0, 8.0),       # pelvic side wall, bladder's level
    ((-150.0, 0.0, 450.0), 10.0, 12.0),       # flank near the skin
])
def test_lesions_away_from_organs_are_kept_unchanged(lesion):
    pet, truth = patient(lesions=(lesion,))
    labels, res = _run(pet)
    assert res.labels.max() == 1 and np.array_equal(res.labels > 0, truth["lesion0"])
    assert not res.review
    assert set(res.table.organ) == {"brain", "myocardium", "kidney", "bladder"}


@pytest.mark.parametrize("side", [(-1.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
def test_node_beside_the_bladder_is_split_off_kept_and_flagged(side):
    # a 10 mm node touching the bladder wall (PSF 7 mm): one component at SUV >= 4
    (cx, cy, cz), rb = BLADDER
    node = ((cx + side[0] * (rb + 9.0), cy + side[1] * (rb + 9.0), cz), 10.0, 9.0)
    pet, truth = patient(lesions=(node,), fwhm_mm=7.0)
    labels, res = _run(pet)
    centre = tuple(np.round((np.asarray(node[0]) - ORIGIN) / SP).astype(int))
    bladder_centre = tuple(np.round((np.asarray(BLADDER[0]) - ORIGIN) / SP).astype(int))
    assert labels[centre] == labels[bladder_centre]                               # one component
    assert res.labels[centre] > 0 and "bladder" in res.review[int(res.labels[centre])]
    kept = res.labels == res.labels[centre]
    assert kept[truth["lesion0"]].mean() > 0.5 and not (kept & truth["bladder"]).any()
    assert "bladder" in set(res.table.organ)


def test_mediastinal_node_beside_the_heart_is_split_off_and_flagged():
    c, ro, _ = HEART
    node = ((c[0] - ro - 10.0, c[1], c[2]), 12.0, 10.0)                           # touches the shell
    pet, truth = patient(lesions=(node,), fwhm_mm=7.0)
    labels, res = _run(pet)
    centre = tuple(np.round((np.asarray(node[0]) - ORIGIN) / SP).astype(int))
    wall = tuple(np.round((np.asarray(c) + [ro - 10.0, 0, 0] - ORIGIN) / SP).astype(int))
    assert labels[centre] == labels[wall]                                         # one component
    assert res.labels[centre] > 0 and "myocardium" in res.review[int(res.labels[centre])]
    assert (res.labels == res.labels[centre])[truth["lesion0"]].mean() > 0.5
    assert "myocardium" in set(res.table.organ)


def test_skull_lesion_below_the_brain_is_kept_for_review():
    # in the scalp/skull over the vertex side, separate from the brain
    lesion = ((72.0, 0.0, 880.0), 6.0, 9.0)
    pet, truth = patient(lesions=(lesion,))
    labels, res = _run(pet)
    assert res.labels.max() == 1 and np.array_equal(res.labels > 0, truth["lesion0"])
    assert list(res.review) == [1] and "skull" in res.review[1]


def test_kidney_lesion_hotter_than_the_kidney_stays_flagged():
    lesion = ((80.0, 45.0, 460.0), 8.0, 15.0)                                      # upper pole, own component
    pet, truth = patient(lesions=(lesion,))
    labels, res = _run(pet)
    assert labels[truth["lesion0"]].min() != labels[truth["kidney"]].max()
    assert res.labels.max() == 1 and np.array_equal(res.labels > 0, truth["lesion0"])
    assert "kidney lesion" in res.review[1]


def test_liver_lesion_stays():
    # the liver is never excluded: a hot focus in the right upper abdomen
    lesion = ((-90.0, -10.0, 470.0), 12.0, 10.0)
    pet, truth = patient(lesions=(lesion,))
    labels, res = _run(pet)
    assert res.labels.max() == 1 and np.array_equal(res.labels > 0, truth["lesion0"])


# ---------------------------------------------------------------------------------------------
# rule edges
# ---------------------------------------------------------------------------------------------
def test_a_solid_mass_in_the_hearts_place_is_kept_and_flagged():
    c, ro, _ = HEART
    pet, truth = patient(organs=("brain", "kidney", "bladder"), lesions=((c, ro, 6.0),))
    labels, res = _run(pet)
    assert res.labels.max() == 1 and "not shell-shaped" in res.review[1]


def test_heart_shell_threshold_edge():
    pet, truth = patient()
    _, res = _run(pet)
    labels = label_components(np.asarray(pet.array) >= 4.0, pet.spacing)
    from carpet.anatomy.physiology import _component_features, _shell_ratio

    f = _component_features(pet, labels, body_landmarks(pet)).set_index("lesion_id", drop=False)
    lid = int(labels[truth["myocardium"]].max())
    ratio = _shell_ratio(labels, f.loc[lid])
    for shell_min, excluded in ((ratio - 1e-6, True), (ratio, True), (ratio + 1e-6, False)):
        _, r = _run(pet, PhysiologyParams(heart_shell_min=shell_min))
        assert ("myocardium" in set(r.table.organ)) is excluded, shell_min


def test_bladder_must_stand_out_from_every_other_component():
    # a bulky pelvic mass holding as much tracer as the bladder: the bladder is not taken for one
    (cx, cy, cz), rb = BLADDER
    mass = ((-110.0, -40.0, 200.0), rb, 9.0)
    pet, truth = patient(bladder_suv=9.0, lesions=(mass,))
    _, res = _run(pet)
    assert "bladder" not in set(res.table.organ) and res.labels.max() == 2
    assert any("like the bladder" in r for r in res.review.values())
    # edge: same volumes, so TLG contrast = SUV ratio; 2 x exactly excludes it, just below does not
    for suv, excluded in ((18.0, True), (17.9, False)):
        pet, _ = patient(bladder_suv=suv, lesions=(mass,))
        assert ("bladder" in set(_run(pet)[1].table.organ)) is excluded, suv


def test_a_single_kidney_is_kept_for_review():
    pet, truth = patient()
    a = np.asarray(pet.array).copy()
    a[_ellipsoid(*KIDNEYS[0])] = 1.0                                               # right nephrectomy
    _, res = _run(pet.with_array(a))
    assert "kidney" not in set(res.table.organ)
    assert any("no matching pair" in r for r in res.review.values())


def test_no_kidneys_without_a_renal_level():
    # without heart and bladder nothing says where the kidneys are: lateral posterior spots stay
    pet, truth = patient(organs=("kidney",))
    _, res = _run(pet)
    assert res.table.empty and res.labels.max() == 2


def test_each_rule_runs_on_what_is_in_the_field_of_view_and_says_why_not():
    pet, truth = patient()
    # z 120-416 mm: no head, no legs: the heart is looked for (a trunk), the pelvis cannot be placed
    cut = Volume(np.asarray(pet.array)[:, :, 30:105], SP, (ORIGIN[0], ORIGIN[1], ORIGIN[2] + SP[2] * 30))
    _, res = _run(cut)
    assert res.table.empty
    assert res.landmarks["myocardium"] is False and res.landmarks["bladder"] is None
    assert "neither the head nor the legs" in res.landmarks["not_looked_for"]["bladder"]
    assert "no head" in res.landmarks["not_looked_for"]["brain"]
    assert "no renal level" in res.landmarks["not_looked_for"]["kidney"]
    # a 96 mm slab holds no trunk of >= 100 mm: nothing is looked for
    cut = Volume(np.asarray(pet.array)[:, :, 30:54], SP, (ORIGIN[0], ORIGIN[1], ORIGIN[2] + SP[2] * 30))
    _, res = _run(cut)
    assert res.landmarks["myocardium"] is None and "no trunk" in res.landmarks["not_looked_for"]["myocardium"]


def test_low_brain_uptake_leaves_no_brain_and_no_false_exclusion():
    pet, truth = patient(organs=("myocardium", "kidney", "bladder"))
    _, res = _run(pet)
    assert "brain" not in set(res.table.organ) and res.labels.max() == 0


# ---------------------------------------------------------------------------------------------
# through carpet quantify
# ---------------------------------------------------------------------------------------------
def test_quantify_writes_excluded_components_and_keep_flag(tmp_path):
    from carpet.quantify import quantify_study, write_outputs

    lesion = ((110.0, -60.0, 120.0), 10.0, 8.0)
    pet, truth = patient(lesions=(lesion,))
    res = quantify_study(pet)
    assert res.summary["n_lesions"] == 1
    assert res.summary["mtv_ml"] == pytest.approx(truth["lesion0"].sum() * 0.064)
    ex = res.summary["excluded"]
    assert set(ex["by_organ"]) == {"brain", "myocardium", "kidney", "bladder"}
    assert ex["volume_ml"] == pytest.approx(sum(truth[o].sum() for o in ("brain", "myocardium", "kidney",
                                                                          "bladder")) * 0.064)
    assert res.summary["landmarks"]["bladder"] is True
    files = write_outputs(res, tmp_path)
    import nibabel as nib
    import pandas as pd

    table = pd.read_csv(files["excluded"])
    assert list(table.columns[:4]) == ["component_id", "organ", "volume_ml", "suv_max"]
    lab = np.asarray(nib.load(files["excluded_labels"]).dataobj)
    assert set(np.unique(lab)) == {0, *table.component_id}
    s = json.loads(files["summary"].read_text())
    assert s["excluded"]["n_components"] == len(table)
    kept = quantify_study(pet, keep_physiological=True)
    assert kept.summary["n_lesions"] == 6 and kept.excluded is None
    assert kept.summary["excluded"]["physiology"] == "off"


def test_heart_and_bladder_placement_from_the_neck_edges():
    from carpet.anatomy.physiology import _Placement

    pet, truth = patient()
    labels, res = _run(pet)
    place = _Placement.of(body_landmarks(pet), PhysiologyParams())
    heart_z = res.table.set_index("organ").loc["myocardium", "centroid_z_mm"]
    bladder_z = res.table.set_index("organ").loc["bladder", "centroid_z_mm"]
    # the heart's centroid at most heart_below_neck_mm below the neck; the bladder's at least
    # bladder_below_neck_mm below it (the table's centroid is the component's: nothing was split off)
    below = place.neck_base_z - heart_z
    assert "myocardium" in set(_run(pet, PhysiologyParams(heart_below_neck_mm=below + 1e-6))[1].table.organ)
    assert "myocardium" not in set(_run(pet, PhysiologyParams(heart_below_neck_mm=below - 1e-3))[1].table.organ)
    below = place.neck_base_z - bladder_z
    assert "bladder" in set(_run(pet, PhysiologyParams(bladder_below_neck_mm=below - 1e-6))[1].table.organ)
    r = _run(pet, PhysiologyParams(bladder_below_neck_mm=below + 1e-3))[1]
    assert "bladder" not in set(r.table.organ) and r.landmarks["bladder"] is False


# ---------------------------------------------------------------------------------------------
# neck glands, tonsils, larynx; injection site; ureters; renal pelvis; splits at kidney and brain
# ---------------------------------------------------------------------------------------------
def _feature(pet, res_labels_input, centre):
    from carpet.anatomy.physiology import _component_features

    labels = res_labels_input
    f = _component_features(pet, labels, body_landmarks(pet)).set_index("lesion_id", drop=False)
    return f.loc[int(labels[tuple(np.round((np.asarray(centre) - ORIGIN) / SP).astype(int))])]


def _organ_of(res, labels, centre):
    """(organ or None, review reason or None) of the input component at ``centre``."""
    idx = tuple(np.round((np.asarray(centre) - ORIGIN) / SP).astype(int))
    if res.excluded[idx]:
        return res.table.set_index("component_id").loc[int(res.excluded[idx]), "organ"], None
    return None, res.review.get(int(res.labels[idx]))


GLANDS = (((-35.0, -10.0, 740.0), 6.0, 6.0), ((36.0, -10.0, 740.0), 6.0, 6.0))   # parotid-like pair


def test_a_mirror_pair_in_the_neck_is_excluded_at_its_edges():
    pet, _ = patient(lesions=GLANDS)
    labels, res = _run(pet)
    assert [_organ_of(res, labels, g[0])[0] for g in GLANDS] == ["salivary_gland"] * 2
    lm = body_landmarks(pet)
    a, b = (_feature(pet, labels, g[0]) for g in GLANDS)
    mismatch = abs((a.x - lm.trunk_x_mm[a.slice]) + (b.x - lm.trunk_x_mm[b.slice]))
    offset = min(abs(a.x - lm.trunk_x_mm[a.slice]), abs(b.x - lm.trunk_x_mm[b.slice]))
    for params, organ in ((dict(neck_pair_mm=mismatch), "salivary_gland"),
                          (dict(neck_pair_mm=mismatch - 1e-6), None),                       # no mirror: review
                          (dict(salivary_min_offset_mm=offset + 1e-6), "tonsil"),
                          (dict(neck_max_suv=a.suv_max), "salivary_gland"),
                          (dict(neck_max_suv=a.suv_max - 1e-4), None),
                          (dict(neck_max_ml=max(a.volume_ml, b.volume_ml) + 1e-9), "salivary_gland"),
                          (dict(neck_max_ml=max(a.volume_ml, b.volume_ml) - 1e-6), None)):
        _, r = _run(pet, PhysiologyParams(**params))
        got, why = _organ_of(r, labels, GLANDS[0][0])
        assert got == organ and (organ or why), params


def test_an_unequal_pair_is_no_pair():
    hot = (GLANDS[0], (GLANDS[1][0], 6.0, 9.5))                  # SUVmax 9.5 > 1.5 x 6
    pet, _ = patient(lesions=hot)
    labels, res = _run(pet, PhysiologyParams(neck_max_suv=10.0))
    assert [_organ_of(res, labels, g[0])[0] for g in hot] == [None, None]
    assert all("no mirror partner" in _organ_of(res, labels, g[0])[1] for g in hot)


def test_a_midline_neck_focus_in_front_is_larynx_behind_it_stays():
    front, back = ((8.0, -30.0, 740.0), 6.0, 6.0), ((8.0, 30.0, 740.0), 6.0, 6.0)
    pet, _ = patient(lesions=(front, back))
    labels, res = _run(pet)
    assert _organ_of(res, labels, front[0])[0] == "larynx_pharynx"
    assert _organ_of(res, labels, back[0])[0] is None and "no mirror" in _organ_of(res, labels, back[0])[1]
    f = _feature(pet, labels, front[0])
    off = abs(f.x - body_landmarks(pet).trunk_x_mm[f.slice])
    for params, organ in ((dict(neck_midline_dy=f.dy), "larynx_pharynx"), (dict(neck_midline_dy=f.dy - 1e-6), None),
                          (dict(neck_midline_mm=off), "larynx_pharynx"), (dict(neck_midline_mm=off - 1e-6), None)):
        assert _organ_of(_run(pet, PhysiologyParams(**params))[1], labels, front[0])[0] == organ, params


def test_neck_rule_starts_below_the_brain():
    from carpet.anatomy.physiology import _z_extent

    front = ((8.0, -30.0, 790.0), 6.0, 6.0)                      # just under the skull base
    pet, truth = patient(lesions=(front,))
    labels, res = _run(pet)
    brain_low = min(np.argwhere(truth["brain"])[:, 2]) * SP[2] + ORIGIN[2]
    top = _z_extent(pet, _feature(pet, labels, front[0]))[1]
    gap = brain_low - top
    assert _organ_of(_run(pet, PhysiologyParams(neck_below_brain_mm=gap))[1], labels, front[0])[0] == "larynx_pharynx"
    assert _organ_of(_run(pet, PhysiologyParams(neck_below_brain_mm=gap + 1e-6))[1], labels, front[0])[0] is None


def _with_arms(pet, foci):
    """Arms raised beside the head (SUV 1) with hot foci (centre, radius, suv)."""
    a = np.asarray(pet.array).copy()
    x, y, z = _grid()
    for sx in (-1, 1):
        a[((x - sx * 150.0) ** 2 + y ** 2 <= 22.0 ** 2) & (z >= 780) & (a == 0)] = 1.0
    for c, r, s in foci:
        a[_ball(c, r)] = s
    return pet.with_array(a)


def test_injection_site_in_one_arm_is_excluded_in_both_arms_kept():
    pet, _ = patient()
    focus, trail = ((150.0, 0.0, 850.0), 6.0, 12.0), ((150.0, 0.0, 900.0), 4.0, 6.0)
    one = _with_arms(pet, (focus, trail))
    labels, res = _run(one)
    assert [_organ_of(res, labels, f[0])[0] for f in (focus, trail)] == ["injection_site"] * 2
    f = _feature(one, labels, focus[0])
    assert _organ_of(_run(one, PhysiologyParams(injection_max_ml=f.volume_ml))[1], labels, focus[0])[0]
    assert "arm" in _organ_of(_run(one, PhysiologyParams(injection_max_ml=f.volume_ml - 1e-6))[1], labels,
                              focus[0])[1]
    lm = body_landmarks(one)
    out = abs(f.x - lm.trunk_x_mm[f.slice]) - lm.trunk_width_mm[f.slice] / 2
    assert _organ_of(_run(one, PhysiologyParams(arm_out_mm=out))[1], labels, focus[0])[0] == "injection_site"
    assert _organ_of(_run(one, PhysiologyParams(arm_out_mm=out + 1e-6))[1], labels, focus[0])[0] is None
    both = _with_arms(pet, (focus, ((-150.0, 0.0, 850.0), 6.0, 12.0)))
    labels, res = _run(both)
    assert res.table.organ.eq("injection_site").sum() == 0 and sum("both arms" in r for r in res.review.values()) == 2


URETER = (-50.0, 30.0)                                           # x, y of a tube from z 200 to 280 mm


def _with_tube(pet, r=3.0, z=(200.0, 280.0), suv=10.0, xy=URETER):
    a = np.asarray(pet.array).copy()
    x, y, zz = _grid()
    a[((x - xy[0]) ** 2 + (y - xy[1]) ** 2 <= r ** 2) & (zz >= z[0]) & (zz <= z[1])] = suv
    return pet.with_array(a)


def test_a_thin_tube_between_kidney_and_bladder_is_a_ureter_a_node_is_not():
    from carpet.anatomy.physiology import _tube

    pet = _with_tube(patient()[0])
    labels, res = _run(pet)
    at = (URETER[0], URETER[1], 240.0)
    assert _organ_of(res, labels, at)[0] == "ureter"
    elong, width, zcos = _tube(labels, _feature(pet, labels, at), pet.spacing, 2)
    for params, organ in ((dict(ureter_min_elongation=elong), "ureter"),
                          (dict(ureter_min_elongation=elong + 1e-6), None),
                          (dict(ureter_max_width_mm=width), "ureter"), (dict(ureter_max_width_mm=width - 1e-6), None),
                          (dict(ureter_min_z_cos=zcos), "ureter"), (dict(ureter_min_z_cos=zcos + 1e-6), None)):
        assert _organ_of(_run(pet, PhysiologyParams(**params))[1], labels, at)[0] == organ, params
    node = patient(lesions=(((URETER[0], URETER[1], 240.0), 10.0, 10.0),))[0]
    labels, res = _run(node)
    assert res.labels.max() == 1 and not res.review                     # round: a node, kept
    # an oval node, 1.5 x longer along z than across (voxelised: elongation 1.34 < 1.8, width 11.3 mm): kept
    oval = patient()[0]
    a = np.asarray(oval.array).copy()
    a[_ellipsoid((URETER[0], URETER[1], 240.0), (6.0, 6.0, 9.0))] = 10.0
    labels, res = _run(oval.with_array(a))
    assert res.labels.max() == 1 and "ureter" not in set(res.table.organ)


def test_renal_pelvis_needs_the_hilum_and_a_ureter_on_its_side():
    (kx, ky, kz), _ = KIDNEYS[0]
    pelvis = ((kx + 40.0, ky, kz), 7.0, 15.0)                    # medial to the right kidney, own component
    pet, _ = patient(lesions=(pelvis,))
    labels, res = _run(pet)
    assert _organ_of(res, labels, pelvis[0]) == (None, _organ_of(res, labels, pelvis[0])[1])
    assert "renal pelvis" in _organ_of(res, labels, pelvis[0])[1]                 # no ureter: review
    with_ureter = _with_tube(pet, z=(200.0, 300.0))
    labels, res = _run(with_ureter)
    assert _organ_of(res, labels, pelvis[0])[0] == "renal_pelvis"
    f = _feature(with_ureter, labels, pelvis[0])
    main_y = _feature(with_ureter, labels, KIDNEYS[0][0]).y
    dy = abs(f.y - main_y)
    assert _organ_of(_run(with_ureter, PhysiologyParams(renal_pelvis_dy_mm=dy))[1], labels, pelvis[0])[0]
    assert _organ_of(_run(with_ureter, PhysiologyParams(renal_pelvis_dy_mm=dy - 1e-6))[1], labels,
                     pelvis[0])[0] is None
    on_left = _with_tube(pet, z=(200.0, 300.0), xy=(50.0, 30.0))              # the ureter on the other side
    labels, res = _run(on_left)
    assert _organ_of(res, labels, pelvis[0])[0] is None


def test_kidney_fragment_ratio_edge():
    # a small piece beside the right kidney: a parenchyma fragment up to 1.75 x the threshold, else review
    (kx, ky, kz), _ = KIDNEYS[0]
    piece = ((kx - 40.0, ky + 10.0, kz + 30.0), 5.0, 6.5)
    pet, _ = patient(lesions=(piece,))
    labels, res = _run(pet)
    from carpet.anatomy.physiology import _component_features

    t_seg = _component_features(pet, labels, body_landmarks(pet)).suv_min.min()    # the threshold, as read
    ratio = _feature(pet, labels, piece[0]).suv_max / t_seg
    assert _organ_of(_run(pet, PhysiologyParams(kidney_fragment_ratio=ratio))[1], labels, piece[0])[0] == "kidney"
    got = _organ_of(_run(pet, PhysiologyParams(kidney_fragment_ratio=ratio - 1e-6))[1], labels, piece[0])
    assert got[0] is None and "parenchyma fragment" in got[1]


def test_a_round_node_beside_a_kidney_is_no_fragment():
    # as faint as a parenchyma fragment (SUV 6 < 1.75 x the threshold) but a ball: kept for review
    (kx, ky, kz), (rx, _, _) = KIDNEYS[0]
    node = ((kx - rx - 12.0, ky, kz), 10.0, 6.0)
    pet, _ = patient(lesions=(node,), fwhm_mm=7.0)
    labels, res = _run(pet)
    got = _organ_of(res, labels, node[0])
    assert got[0] is None and "round like a node" in got[1]
    from carpet.anatomy.physiology import _moments

    f = _feature(pet, labels, node[0])
    w = np.sqrt(_moments(labels, f, pet.spacing)[0])
    for params, organ in ((dict(kidney_node_max_axis_ratio=w[2] / w[0] + 1e-9), None),
                          (dict(kidney_node_max_axis_ratio=w[2] / w[0] - 1e-6), "kidney"),
                          (dict(kidney_node_min_ml=f.volume_ml - 1e-9), None),
                          (dict(kidney_node_min_ml=f.volume_ml + 1e-6), "kidney")):
        assert _organ_of(_run(pet, PhysiologyParams(**params))[1], labels, node[0])[0] == organ, params


def test_node_merged_with_a_kidney_is_split_off_and_flagged():
    (kx, ky, kz), (rx, _, _) = KIDNEYS[0]
    node = ((kx - rx - 9.0, ky, kz), 10.0, 12.0)                 # touches the lateral border (PSF 7 mm)
    pet, truth = patient(lesions=(node,), fwhm_mm=7.0)
    labels, res = _run(pet)
    centre = tuple(np.round((np.asarray(node[0]) - ORIGIN) / SP).astype(int))
    kc = tuple(np.round((np.asarray(KIDNEYS[0][0]) - ORIGIN) / SP).astype(int))
    assert labels[centre] == labels[kc]                                           # one component
    assert res.labels[centre] > 0 and "kidney" in res.review[int(res.labels[centre])]
    kept = res.labels == res.labels[centre]
    assert kept[truth["lesion0"]].mean() > 0.5 and kept[truth["kidney"]].mean() < 0.05
    assert "kidney" in set(res.table.organ)


def test_skull_lesion_merged_with_the_brain_is_split_off_and_flagged():
    (bx, by, bz), (rx, _, _) = BRAIN
    lesion = ((bx + rx + 8.0, by, bz), 9.0, 14.0)
    pet, truth = patient(lesions=(lesion,), fwhm_mm=7.0)
    labels, res = _run(pet)
    centre = tuple(np.round((np.asarray(lesion[0]) - ORIGIN) / SP).astype(int))
    assert labels[centre] == labels[tuple(np.round((np.asarray(BRAIN[0]) - ORIGIN) / SP).astype(int))]
    assert res.labels[centre] > 0 and "brain" in res.review[int(res.labels[centre])]
    assert (res.labels == res.labels[centre])[truth["lesion0"]].mean() > 0.5


# ---------------------------------------------------------------------------------------------
# the real whole-body scan
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sts_001_whole_body_physiology_excluded_tumour_kept():
    from conftest import reference_path

    from carpet.io import read_image
    from carpet.quantify import quantify_study

    pet = read_image(reference_path("sts-pet", "STS_001_raw", "FDG_PET", "image"))
    before = quantify_study(pet, keep_physiological=True)
    after = quantify_study(pet)
    tumour = lambda t: t.loc[t.suv_max.idxmax()] if t is not None else None  # noqa: E731
    t0, t1 = before.lesions, after.lesions
    thigh = lambda t: t[(t.centroid_z_mm < -740) & (t.volume_ml > 40)]  # noqa: E731
    assert len(thigh(t0)) == 1 and len(thigh(t1)) == 1
    a, b = thigh(t0).iloc[0], thigh(t1).iloc[0]
    assert b.suv_max == pytest.approx(7.91, abs=0.01) and b.volume_ml == a.volume_ml == pytest.approx(48.79, abs=0.01)
    assert not b.review and b.region == "extremities" and a.region == "extremities"   # thigh
    marks = after.summary["landmarks"]
    assert marks["body_length_mm"] == pytest.approx(873, abs=10) and marks["not_looked_for"] == {}
    assert all(marks[o] for o in ("head", "brain", "myocardium", "kidney", "bladder", "renal_pelvis", "ureter",
                                  "tonsil", "larynx_pharynx", "injection_site"))
    by = after.excluded_table.groupby("organ")
    vol = by.volume_ml.sum()
    assert set(vol.index) == {"brain", "myocardium", "kidney", "bladder", "renal_pelvis", "ureter", "tonsil",
                              "larynx_pharynx", "injection_site"}
    assert vol["myocardium"] == pytest.approx(195.8, abs=0.5)
    assert vol["bladder"] == pytest.approx(73.4, abs=0.5) and by.suv_max.max()["bladder"] == pytest.approx(66.5, abs=0.1)
    assert vol["brain"] == pytest.approx(55.2, abs=1.0)
    assert vol["kidney"] > 25
    # both kidneys: pieces on both sides of the mid-line
    k = after.excluded_table[after.excluded_table.organ == "kidney"]
    assert (k.centroid_x_mm < 0).any() and (k.centroid_x_mm > 30).any()
    assert before.summary["mtv_ml"] == pytest.approx(447.3, abs=0.1)
    # the tumour: the same voxels before and after
    lab0, lab1 = np.asarray(before.labels.array), np.asarray(after.labels.array)
    assert np.array_equal(lab0 == a.lesion_id, lab1 == b.lesion_id)
    # Independent truth: the reader's RTSTRUCT (GTV_Mass + GTV_Edema). Disease = the SUV >= 4 components that
    # touch it; MTV within 10 % of it (what is left: single-voxel specks, one neck speck flagged for review).
    from carpet.io.masks import read_mask

    with pytest.warns(UserWarning):
        gtv = np.asarray(read_mask(reference_path("sts-pet", "STS_001_raw", "FDG_PET", "mask", "1-1.dcm"),
                                   pet).array) > 0
    disease = np.isin(lab0, np.unique(lab0[gtv & (lab0 > 0)])).sum() * pet.voxel_volume_ml
    assert disease == pytest.approx(64.5, abs=0.2)
    assert after.summary["mtv_ml"] == pytest.approx(disease, rel=0.10)
    assert vol["ureter"] == pytest.approx(3.16, abs=0.05) and vol["renal_pelvis"] == pytest.approx(3.23, abs=0.05)
    # nothing excluded inside the reader's GTV
    assert not (np.asarray(after.excluded.array)[gtv] > 0).any()
    # the hottest lesion left that is not flagged for review is the tumour (a 0.65 mL piece split off the right
    # kidney, SUVmax 9.4, is kept and flagged)
    assert tumour(t1[~t1.review]).suv_max == pytest.approx(7.91, abs=0.01)


# ---------------------------------------------------------------------------------------------
# lesion regions (carpet.anatomy.regions)
# ---------------------------------------------------------------------------------------------
REGION_CASES = [(((0.0, 0.0, 760.0), 8.0, 9.0), "head_neck"),          # neck, deep
                (((-90.0, -20.0, 560.0), 10.0, 9.0), "thorax"),          # above the diaphragm (heart - 60 mm)
                (((-60.0, -40.0, 450.0), 10.0, 9.0), "abdomen"),         # between diaphragm and pelvic inlet
                (((110.0, -60.0, 120.0), 10.0, 8.0), "pelvis"),          # below the inlet (bladder + 100 mm)
                (((-163.0, 0.0, 300.0), 5.0, 9.0), "skin_subcutaneous")]


def test_lesion_regions_follow_the_landmarks():
    from carpet.quantify import quantify_study

    pet, truth = patient(lesions=tuple(les for les, _ in REGION_CASES))
    res = quantify_study(pet)
    t = res.lesions.sort_values("centroid_z_mm", ascending=False)
    expected = [r for (les, r) in sorted(REGION_CASES, key=lambda c: -c[0][0][2])]
    assert list(t["region"]) == expected
    assert res.summary["region_rule"]["version"]
    # without the heart there is no diaphragm: trunk lesions are unknown, the rest still placed
    pet, _ = patient(organs=("brain", "kidney", "bladder"), lesions=tuple(les for les, _ in REGION_CASES))
    t = quantify_study(pet).lesions.sort_values("centroid_z_mm", ascending=False)
    assert list(t["region"]) == ["head_neck", "unknown", "unknown", "skin_subcutaneous", "pelvis"]


def test_regions_unknown_on_a_short_field_of_view():
    from carpet.quantify import quantify_study

    pet, _ = patient(lesions=(((110.0, -60.0, 120.0), 10.0, 8.0),))
    cut = Volume(np.asarray(pet.array)[:, :, 0:60], SP, ORIGIN)                     # 240 mm of pelvis
    t = quantify_study(cut).lesions
    assert set(t["region"]) == {"unknown"}
