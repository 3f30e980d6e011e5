"""pct41 and a50p thresholds pinned at value−ε / value / value+ε against brute-force truth.

The expected thresholds are computed here independently of :mod:`carpet.segment`: the seed's distance map by
a KD-tree over voxel centres, SUVpeak by averaging every voxel whose centre lies within 6.2035 mm, the a50p
background as the median of the shell voxels, connectivity by ``scipy.ndimage.label``.
"""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from carpet.segment import SegmentParams, per_lesion_threshold, segment

pytestmark = pytest.mark.filterwarnings("ignore:no minimum lesion volume")
SP = (2.0, 2.0, 2.0)


def test_pct41_threshold_inclusive_and_connected_to_the_maximum():
    a = np.ones((20, 5, 5))
    thr = 0.41 * 10.0
    a[10, 2, 2] = 10.0                 # the seed (max)
    a[11, 2, 2] = thr                  # == 41 % of max: in
    a[12, 2, 2] = thr + 1e-9           # connected through the previous one: in
    a[9, 2, 2] = thr - 1e-9            # just below: out ...
    a[8, 2, 2] = 6.0                   # ... which cuts this one (above the threshold) off the maximum
    lab = segment(a, SP, ["pct41"], params=SegmentParams(seed_suv=7.0)).labels["pct41"]
    assert list(np.flatnonzero(lab[:, 2, 2])) == [10, 11, 12] and (lab > 0).sum() == 3


def test_pct41_hottest_lesion_claims_shared_voxels_first():
    # Two seeds (10 and 20) whose VOIs overlap. The hotter one (41 % = 8.2) takes 3..6; the colder one's
    # maximum (i = 3) is then taken, so the voxel of 5.0 at i = 7 (above 4.1, below 8.2) belongs to nobody.
    # Processing the colder seed first would grow it through the hotter one into i = 7.
    a = np.ones((14, 5, 5))
    a[3:8, 2, 2] = [10.0, 9.0, 20.0, 9.0, 5.0]
    lab = segment(a, SP, ["pct41"], params=SegmentParams(seed_suv=9.5)).labels["pct41"]
    assert list(np.flatnonzero(lab[:, 2, 2])) == [3, 4, 5, 6] and (lab > 0).sum() == 4


def _a50p_study():
    """A hot core (SUV 10 around one voxel of 20) in a random background, with probes next to the core,
    a cold user seed and an excluded slab in the core's background shell."""
    rng = np.random.default_rng(7)
    shape = (46, 46, 46)
    a = rng.uniform(1.0, 3.0, shape)
    pos = np.indices(shape).reshape(3, -1).T * np.array(SP)
    c = np.array([44.0, 44.0, 44.0])
    core = (np.linalg.norm(pos - c, axis=1) <= 10.0).reshape(shape)
    a[core] = 10.0
    a[22, 22, 22] = 20.0
    seeds = core.astype(np.int32)
    seeds[34:37, 20:24, 20:24] = 2                 # a cold user seed 12–18 mm from the core, in its shell
    a[seeds == 2] = 0.0
    exclude = np.zeros(shape, bool)
    exclude[8:11, 15:30, 15:30] = True             # a slab of the shell removed as physiological uptake
    a[exclude] = 3.5
    return a, seeds, exclude, pos


def _a50p_threshold(a, seeds, exclude, pos):
    """0.5 · (SUVpeak − bg) + bg, computed by brute force."""
    core = seeds == 1
    tree = cKDTree(pos[core.ravel()])
    dist = tree.query(pos)[0].reshape(a.shape)
    flat = a.ravel()
    spheres = cKDTree(pos).query_ball_point(pos[core.ravel()], 6.2035)
    peak = max(flat[idx].mean() for idx in spheres)
    shell = (dist > 10.0) & (dist <= 20.0) & (seeds == 0) & ~exclude
    bg = float(np.median(a[shell]))
    return 0.5 * (peak - bg) + bg, dist


def test_a50p_threshold_brute_force():
    a, seeds, exclude, pos = _a50p_study()
    thr, dist = _a50p_threshold(a, seeds, exclude, pos)
    assert 5.0 < thr < 7.0
    # probes touching the core: thr − ε out, thr + ε in, placed far apart (never in one sphere)
    probes = {(22, 22, 16): thr - 1e-7, (22, 22, 28): thr + 1e-7, (22, 16, 22): thr - 1e-7,
              (22, 28, 22): thr + 1e-7}
    for p, v in probes.items():
        a[p] = v
    assert all(dist[p] == pytest.approx(2.0) for p in probes)
    lab = per_lesion_threshold(a, seeds, SP, "a50p", SegmentParams(seed_suv=8.0), exclude=exclude)
    expected = (a >= thr) & (dist <= 10.0) & ~exclude
    comp, _ = ndimage.label(expected, structure=np.ones((3, 3, 3)))
    expected = comp == comp[22, 22, 22]
    assert np.array_equal(lab > 0, expected)
    assert [bool(lab[p]) for p in probes] == [False, True, False, True]
