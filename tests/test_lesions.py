"""Per-lesion measures against truth computed independently (brute force over voxels)."""

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from carpet.lesions import (dmax_voxel_mm, max_pairwise_distance, measure_lesions,
                            study_measures, suv_peaks)
from carpet.volume import Volume

SPACING = (2.0, 2.5, 3.0)


def _ball_lattice(shape, centre_mm, radius_mm, spacing):
    """Voxels whose centre lies inside a ball, by testing every voxel (brute force)."""
    out = np.zeros(shape, dtype=bool)
    for idx in itertools.product(*(range(n) for n in shape)):
        d2 = sum(((i * s) - c) ** 2 for i, s, c in zip(idx, spacing, centre_mm))
        out[idx] = d2 <= radius_mm ** 2
    return out


@pytest.fixture(scope="module")
def study():
    """Three balls with distinct SUVs in a background of 1, a rotated/offset grid."""
    shape = (24, 20, 16)
    balls = [((12.0, 15.0, 15.0), 7.0, 6.0), ((34.0, 30.0, 30.0), 5.0, 9.0), ((10.0, 38.0, 36.0), 4.0, 4.5)]
    suv = np.ones(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    for n, (c, r, v) in enumerate(balls, start=1):
        ball = _ball_lattice(shape, c, r, SPACING)
        suv[ball] = v
        labels[ball] = n
    direction = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=float)  # a 90° rotation
    pet = Volume(suv, SPACING, origin=(-100.0, 50.0, 20.0), direction=direction)
    return pet, labels, balls


def test_volume_count_suv_tlg_exact(study):
    pet, labels, balls = study
    table = measure_lesions(pet, labels)
    assert list(table["lesion_id"]) == [1, 2, 3]
    voxel_ml = 2.0 * 2.5 * 3.0 / 1000
    for row, (_, _, v) in zip(table.itertuples(), balls):
        n = int((labels == row.lesion_id).sum())
        assert row.n_voxels == n
        assert row.volume_ml == n * voxel_ml
        assert row.suv_max == v and row.suv_mean == pytest.approx(v, rel=1e-12)
        assert row.suv_sd == pytest.approx(0.0, abs=1e-6)
        assert row.tlg == pytest.approx(n * v * voxel_ml, rel=1e-12)


def test_centroids_world_and_dmax_brute_force(study):
    pet, labels, _ = study
    table = measure_lesions(pet, labels)
    cents = []
    for lab in (1, 2, 3):
        ijk = np.argwhere(labels == lab).astype(float)
        # world by hand: origin + direction @ (spacing * ijk)
        world = np.array([pet.origin + pet.direction @ (np.array(SPACING) * p) for p in ijk])
        cents.append(world.mean(axis=0))
    cents = np.array(cents)
    got = table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy()
    np.testing.assert_allclose(got, cents, atol=1e-9)
    truth_dmax = max(np.linalg.norm(a - b) for a, b in itertools.combinations(cents, 2))
    s = study_measures(table)
    assert s["dmax_mm"] == pytest.approx(truth_dmax, rel=1e-12)
    assert s["n_lesions"] == 3 and s["mtv_ml"] == pytest.approx(table["volume_ml"].sum())
    assert s["suv_max"] == 9.0


def test_dmax_voxel_brute_force(study):
    pet, labels, _ = study
    world = pet.index_to_world(np.argwhere(labels > 0))
    truth = pdist(world).max()
    assert dmax_voxel_mm(pet, labels) == pytest.approx(truth, rel=1e-12)


@pytest.mark.parametrize("spacing", [(2.0, 2.0, 3.0), (1.0, 1.0, 1.5)])  # direct and FFT paths
def test_suv_peak_brute_force(spacing):
    rng = np.random.default_rng(3)
    shape = (14, 12, 10)
    suv = rng.gamma(2.0, 1.0, shape)
    labels = np.zeros(shape, dtype=np.int32)
    labels[0:4, 0:3, 0:3] = 1        # touches the image corner: spheres are cut by the border
    labels[7:11, 5:9, 4:8] = 2
    labels[12, 11, 9] = 3            # single voxel at the opposite corner
    idx = np.argwhere(np.ones(shape, bool))
    pos = idx * np.array(spacing)
    glob, loc = suv_peaks(suv, labels, spacing)
    for lab in (1, 2, 3):
        means = {}
        for v in np.argwhere(labels == lab):
            d = np.linalg.norm(pos - v * np.array(spacing), axis=1)
            means[tuple(v)] = suv.ravel()[d <= 6.2035].mean()
        assert glob[lab - 1] == pytest.approx(max(means.values()), rel=1e-10)
        vmax = suv[labels == lab].max()
        top = [m for v, m in means.items() if suv[v] == vmax]
        assert loc[lab - 1] == pytest.approx(max(top), rel=1e-10)


def test_local_peak_ties_take_the_highest():
    suv = np.ones((20, 20, 20))
    labels = np.zeros(suv.shape, dtype=np.int32)
    labels[2:18, 9:11, 9:11] = 1
    suv[labels == 1] = 2.0
    suv[3, 9, 9] = suv[15, 9, 9] = 5.0    # two maxima
    suv[15:18, 10, 10] = 4.0               # hotter surroundings of the second one
    suv[15, 9, 9] = 5.0
    spacing = (2.0, 2.0, 2.0)
    _, loc = suv_peaks(suv, labels, spacing)
    pos = np.argwhere(np.ones(suv.shape, bool)) * 2.0
    m = [suv.ravel()[np.linalg.norm(pos - np.array(c) * 2.0, axis=1) <= 6.2035].mean()
         for c in [(3, 9, 9), (15, 9, 9)]]
    assert m[1] > m[0]
    assert loc[0] == pytest.approx(m[1])


def test_empty_and_gapped_labels():
    pet = Volume(np.ones((5, 5, 5), np.float32), (1, 1, 1))
    assert len(measure_lesions(pet, np.zeros((5, 5, 5), np.int32))) == 0
    labels = np.zeros((5, 5, 5), np.int32)
    labels[1, 1, 1] = 4
    table = measure_lesions(pet, labels)
    assert list(table["lesion_id"]) == [4] and table["n_voxels"].iloc[0] == 1
    s = study_measures(table)
    assert s["dmax_mm"] == 0.0 and s["n_lesions"] == 1


@pytest.mark.parametrize("metric,fn", [("euclidean", lambda d: np.sqrt((d ** 2).sum())),
                                       ("manhattan", lambda d: np.abs(d).sum()),
                                       ("chebyshev", lambda d: np.abs(d).max())])
def test_max_pairwise_distance_hull_equals_brute_force(metric, fn):
    rng = np.random.default_rng(1)
    t = rng.normal(size=(40, 1))
    for pts in (rng.normal(size=(300, 3)) * [50, 30, 80],
                np.column_stack([rng.normal(size=(50, 2)), np.zeros(50)]),  # coplanar (one slice)
                np.column_stack([rng.normal(size=(50, 2)), np.zeros(50)]) @ [[1, 0, 1], [0, 2, 1], [0, 0, 0]],
                np.hstack([t, 2 * t, -t]) + 5.0):                          # collinear
        truth = max(fn(a - b) for a, b in itertools.combinations(pts, 2))
        assert max_pairwise_distance(pts, metric) == pytest.approx(truth, rel=1e-12)


def test_sdmax():
    bsa = 1.81
    import pandas as pd
    table = pd.DataFrame({"centroid_x_mm": [0.0, 300.0], "centroid_y_mm": [0.0, 400.0],
                          "centroid_z_mm": [0.0, 0.0], "volume_ml": [1.0, 2.0], "tlg": [1.0, 1.0],
                          "suv_max": [3.0, 4.0]})
    s = study_measures(table, bsa_m2=bsa)
    assert s["dmax_mm"] == pytest.approx(500.0)
    assert s["sdmax_per_m"] == pytest.approx(0.5 / bsa)


def test_memory_order_does_not_change_results(study):
    """carpet's arrays from SimpleITK are F-ordered views; C-ordered arrays must give the same table."""
    pet, labels, _ = study
    pet_f = pet.with_array(np.asfortranarray(pet.array))
    a = measure_lesions(pet, np.ascontiguousarray(labels))
    b = measure_lesions(pet_f, np.asfortranarray(labels))
    pd_testing = __import__("pandas").testing
    pd_testing.assert_frame_equal(a, b)
    assert dmax_voxel_mm(pet, np.ascontiguousarray(labels)) == dmax_voxel_mm(pet_f, np.asfortranarray(labels))


@pytest.mark.parametrize("bsa", [0.0, -1.8, float("nan")])
def test_sdmax_rejects_impossible_bsa(bsa):
    import pandas as pd

    from carpet.errors import InputError

    table = pd.DataFrame({"centroid_x_mm": [0.0, 300.0], "centroid_y_mm": [0.0, 400.0],
                          "centroid_z_mm": [0.0, 0.0], "volume_ml": [1.0, 2.0], "tlg": [1.0, 1.0],
                          "suv_max": [3.0, 4.0]})
    with pytest.raises(InputError, match="body surface area"):
        study_measures(table, bsa_m2=bsa)


def test_centroid_is_geometric_not_uptake_weighted():
    """Dmax uses the geometric centroid (Cottereau): a hot end must not pull it."""
    suv = np.ones((12, 3, 3))
    labels = np.zeros(suv.shape, np.int32)
    labels[1:5, 1, 1], labels[8:11, 1, 1] = 1, 2
    suv[1:5, 1, 1] = [2.0, 2.0, 2.0, 50.0]          # lesion 1: hot at its far end
    suv[8:11, 1, 1] = 3.0
    table = measure_lesions(Volume(suv, (2.0, 2.0, 2.0)), labels)
    assert list(table["centroid_x_mm"]) == [2.5 * 2.0, 9.0 * 2.0]
    assert study_measures(table)["dmax_mm"] == pytest.approx((9.0 - 2.5) * 2.0)
