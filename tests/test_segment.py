"""Segmentation methods: thresholds at their boundaries, connectivity, exclusion, per-lesion methods."""

import numpy as np
import pytest
from scipy import ndimage

from carpet.errors import InputError
from carpet.segment import (METHODS, SegmentParams, label_components, liver_threshold,
                            per_lesion_threshold, segment)

pytestmark = pytest.mark.filterwarnings("ignore:no minimum lesion volume")
EPS = 1e-4
SP = (2.0, 2.0, 2.0)


def _three_voxels(threshold):
    a = np.zeros((9, 3, 3), np.float32)
    a[1, 1, 1], a[4, 1, 1], a[7, 1, 1] = threshold - EPS, threshold, threshold + EPS
    return a


@pytest.mark.parametrize("method,thr", [("suv4", 4.0), ("suv2.5", 2.5)])
def test_fixed_thresholds_boundary(method, thr):
    lab = segment(_three_voxels(thr), SP, [method]).labels[method]
    assert lab[1, 1, 1] == 0 and lab[4, 1, 1] > 0 and lab[7, 1, 1] > 0
    assert lab.dtype == np.int32 and lab.max() == 2


@pytest.mark.parametrize("method,variant,expected", [
    ("percist", "1.5mean+2sd", 1.5 * 1.6 + 2 * 0.25),
    ("percist", "liver_mean", 1.6),
    ("liver3sd", "1.5mean+2sd", 1.6 + 3 * 0.25)])
def test_liver_thresholds_boundary(method, variant, expected):
    params = SegmentParams(liver_mean=1.6, liver_sd=0.25, percist_variant=variant)
    assert liver_threshold(method, 1.6, 0.25, variant) == pytest.approx(expected)
    lab = segment(_three_voxels(np.float32(expected)), SP, [method], params=params).labels[method]
    assert lab[1, 1, 1] == 0 and lab[4, 1, 1] > 0 and lab[7, 1, 1] > 0


def test_liver_method_without_liver_fails_clearly():
    with pytest.raises(InputError, match="liver-voi"):
        segment(np.ones((3, 3, 3)), SP, ["percist"])
    seg = segment(np.ones((3, 3, 3)), SP, "all", skip_unavailable=True)
    assert set(seg.skipped) == {"percist", "liver3sd"} and "suv4" in seg.labels


def test_connectivity_6_18_26():
    m = np.zeros((4, 4, 4), bool)
    m[0, 0, 0] = m[1, 1, 1] = True          # corner neighbours
    m[3, 3, 3] = m[3, 2, 2] = True          # edge neighbours
    assert label_components(m, SP, connectivity=26).max() == 2
    assert label_components(m, SP, connectivity=18).max() == 3
    assert label_components(m, SP, connectivity=6).max() == 4
    with pytest.raises(InputError, match="connectivity"):
        SegmentParams(connectivity=8)


def test_min_volume_drops_small_components_and_relabels():
    m = np.zeros((20, 6, 6), bool)
    m[1:3, 1:3, 1:3] = True                 # 8 voxels × 8 mm³ = 0.064 mL
    m[10:15, 1:4, 1:4] = True               # 45 voxels = 0.36 mL
    lab = label_components(m, SP, min_volume_ml=0.064)
    assert lab.max() == 2
    lab = label_components(m, SP, min_volume_ml=0.0641)
    assert lab.max() == 1 and (lab == 1).sum() == 45


def test_exclusion_removes_voxels_before_labelling():
    a = np.zeros((12, 5, 5), np.float32)
    a[1:11, 2, 2] = 6.0                     # one bar
    excl = np.zeros(a.shape, bool)
    excl[5, 2, 2] = True                    # cutting it in two
    lab = segment(a, SP, ["suv4"], exclude=excl).labels["suv4"]
    assert lab.max() == 2 and lab[5, 2, 2] == 0 and (lab > 0).sum() == 9


def _blob_study():
    """Two uniform balls on background 1: SUV 10 (r 4 voxels) and SUV 5 (r 3 voxels)."""
    a = np.ones((40, 24, 24), np.float32)
    i, j, k = np.ogrid[:40, :24, :24]
    b1 = (i - 10) ** 2 + (j - 12) ** 2 + (k - 12) ** 2 <= 16
    b2 = (i - 29) ** 2 + (j - 12) ** 2 + (k - 12) ** 2 <= 9
    a[b1], a[b2] = 10.0, 5.0
    # a halo of 4.5 around ball 1: above 41 % of 10 (4.1), below 50 % (5.0) and below 41 % of 5 ... no:
    halo = ((i - 10) ** 2 + (j - 12) ** 2 + (k - 12) ** 2 <= 25) & ~b1
    a[halo] = 4.5
    return a, b1, b2, halo


def test_pct41_per_lesion_thresholds_brute_force():
    a, b1, b2, halo = _blob_study()
    lab = segment(a, SP, ["pct41"]).labels["pct41"]
    # lesion 1: 0.41 × 10 = 4.1 → ball + halo; lesion 2: 0.41 × 5 = 2.05 → the ball only
    assert lab.max() == 2
    assert np.array_equal(lab > 0, b1 | halo | b2)


def test_pct41_voi_limits_growth_and_connection_to_max():
    a = np.ones((40, 9, 9), np.float32)
    a[2:4, 4, 4] = 10.0                     # a hot seed
    a[4:40, 4, 4] = 5.0                     # a long warm tail above 4.1
    params = SegmentParams(seed_suv=6.0, voi_margin_mm=10.0)
    lab = segment(a, SP, ["pct41"], params=params).labels["pct41"]
    # the VOI: voxels within 10 mm (5 voxels at 2 mm) of the seed: i ≤ 3 + 5
    assert np.array_equal(np.flatnonzero(lab[:, 4, 4]), np.arange(2, 9))
    assert (lab > 0).sum() == 7


def test_a50p_with_known_background():
    a, b1, b2, halo = _blob_study()
    a[halo] = 1.0
    # uniform balls of r ≥ 3 voxels (6 mm): the 1 cm³ sphere (r 6.2 mm) on the centre lies inside the
    # ball (r 8 mm) for ball 1, so peak = 10, bg = 1 → threshold 5.5; ball 2 (r 6 mm) is smaller than
    # the sphere: peak < 5, threshold between 1 and 5, still the ball exactly.
    seg = segment(a, SP, ["a50p"])
    lab = seg.labels["a50p"]
    assert np.array_equal(lab > 0, b1 | b2)


def test_majority_votes_brute_force():
    rng = np.random.default_rng(0)
    spikes = np.zeros((30, 30, 30))
    spikes[tuple(rng.integers(3, 27, (3, 12)))] = rng.uniform(300, 1500, 12)
    a = 1.0 + ndimage.gaussian_filter(spikes, 2.0) + rng.normal(0, 0.2, spikes.shape)
    seg = segment(a.astype(np.float32), SP, ["mv2", "mv3", "pct41", "a50p", "suv2.5", "suv4"])
    votes = sum((seg.labels[m] > 0).astype(int) for m in ("pct41", "a50p", "suv2.5", "suv4"))
    assert np.array_equal(seg.labels["mv2"] > 0, votes >= 2)
    assert np.array_equal(seg.labels["mv3"] > 0, votes >= 3)
    assert (votes >= 3).sum() < (votes >= 2).sum()


def test_user_seeds_and_unknown_method():
    a, b1, b2, halo = _blob_study()
    seeds = b2.astype(np.int32)              # only lesion 2 given
    lab = per_lesion_threshold(a, seeds, SP, "pct41", SegmentParams())
    assert np.array_equal(lab > 0, b2)
    with pytest.raises(InputError, match="unknown method"):
        segment(a, SP, ["suv3"])
    assert len(METHODS) == 8


def test_min_volume_applies_to_grown_lesions_not_to_seeds():
    a = np.ones((20, 20, 20), np.float32)
    a[8:13, 8:13, 8:13] = 5.0                              # a 5³ region above 0.41 × 12 = 4.92 ...
    a[10, 10, 10] = 12.0                                   # ... around a one-voxel seed above 6
    params = SegmentParams(min_volume_ml=0.5, seed_suv=6.0)  # 125 × 8 mm³ = 1.0 mL ≥ 0.5; seed 0.008 mL
    lab = segment(a, SP, ["pct41"], params=params).labels["pct41"]
    assert lab.max() == 1 and (lab == 1).sum() == 125


def _head_and_body():
    """4 mm grid, 44 cm tall: a brain (1.3 L, SUV 7) at the top, a bulky 0.7 L lesion lower down
    and a small lesion just below the brain."""
    shape, sp = (60, 60, 110), (4.0, 4.0, 4.0)
    x, y, z = (np.ogrid[:shape[0], :shape[1], :shape[2]][a] * sp[a] for a in range(3))
    a = np.ones(shape, np.float32)
    brain = ((x - 120) / 70.0) ** 2 + ((y - 120) / 80.0) ** 2 + ((z - 400) / 55.0) ** 2 <= 1
    bulky = (x - 120) ** 2 + (y - 120) ** 2 + (z - 160) ** 2 <= 55.0 ** 2
    small = (x - 200) ** 2 + (y - 120) ** 2 + (z - 330) ** 2 <= 10.0 ** 2
    a[brain], a[bulky], a[small] = 7.0, 9.0, 6.0
    return a, sp, z, brain, bulky, small


def test_auto_exclude_removes_only_the_brain():
    from carpet.segment import auto_exclude_brain

    a, sp, z, brain, bulky, small = _head_and_body()
    assert bulky.sum() * 0.064 > 500                       # the bulky lesion is brain-sized ...
    mask, record = auto_exclude_brain(a, sp, z)
    assert np.array_equal(mask, brain)                     # ... but not at the top: kept
    assert record["removed"]["volume_ml"] == pytest.approx(brain.sum() * 0.064)
    lab = segment(a, sp, ["suv4"], exclude=mask).labels["suv4"]
    assert lab.max() == 2 and np.array_equal(lab > 0, bulky | small)


def test_auto_exclude_never_takes_a_lesion_sized_component():
    from carpet.segment import auto_exclude_brain

    a, sp, z, brain, bulky, small = _head_and_body()
    a[brain] = 1.0                                          # no brain uptake: only lesions are hot
    a[small] = 1.0
    top = (np.indices(a.shape)[2] >= 95) & (np.indices(a.shape)[0] < 20) & (np.indices(a.shape)[1] < 20)
    a[top] = 8.0                                            # 20×20×15 voxels = 384 mL at the top
    mask, record = auto_exclude_brain(a, sp, z)
    assert not mask.any() and record["removed"] is None


def test_quantify_auto_exclude_records_what_was_removed():
    from carpet.quantify import quantify_study
    from carpet.volume import Volume

    a, sp, z, brain, bulky, small = _head_and_body()
    pet = Volume(a, sp, origin=(0.0, 0.0, 0.0))
    # the legacy brain rule alone: the physiology rules (on by default) would take the lone hot mid-line
    # mass of this block for the bladder (docs/physiology.md, failure modes)
    off = quantify_study(pet, keep_physiological=True)
    on = quantify_study(pet, auto_exclude=True, keep_physiological=True)
    assert off.summary["n_lesions"] == 3 and on.summary["n_lesions"] == 2
    removed = on.summary["provenance"]["segmentation"]["auto_exclude"]["removed"]
    assert removed["region"] == "brain" and removed["volume_ml"] == pytest.approx(brain.sum() * 0.064)
    assert off.summary["provenance"]["segmentation"]["auto_exclude"] is None


def test_pct41_default_seeds_ignore_background_noise_peaks():
    a = np.full((30, 20, 20), 2.0, np.float32)             # liver-like background of SUV 2
    a[5, 10, 10] = 2.6                                      # a noise peak above 2.5 but below 4
    a[20:23, 9:12, 9:12] = 10.0                             # a lesion
    lab = segment(a, SP, ["pct41"]).labels["pct41"]         # 0.41 × 10 = 4.1 > background
    assert lab.max() == 1 and np.array_equal(np.argwhere(lab > 0), np.argwhere(a == 10.0))
    grown = segment(a, SP, ["pct41"], params=SegmentParams(seed_suv=2.5)).labels["pct41"]
    assert (grown > 0).sum() > 27                           # 41 % of 2.6 takes the background
