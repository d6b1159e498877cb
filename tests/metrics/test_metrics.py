"""J, F and their statistics against cases worked out by hand (the DAVIS 2017 definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swiftcuda.errors import InputError
from swiftcuda.metrics import (
    ScoreOptions,
    boundary_map,
    decay_bins,
    disk,
    f_measure,
    jaccard,
    score_labels,
    statistics,
    tolerance_pixels,
)


def square(shape=(10, 10), rows=(2, 6), cols=(2, 6)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def pixels(shape, coords) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for r, c in coords:
        mask[r, c] = True
    return mask


# ---- boundary map -------------------------------------------------------------------------------


def test_boundary_of_a_square_is_the_ring_shifted_towards_the_origin():
    # 4x4 square at rows 2-5, cols 2-5: the row above and the column left of it (including the
    # corner (1, 1)), its own bottom row and its own right column.
    expected = pixels(
        (10, 10),
        [(1, c) for c in range(1, 6)]
        + [(r, 1) for r in range(2, 6)]
        + [(5, c) for c in range(2, 6)]
        + [(r, 5) for r in range(2, 5)],
    )
    assert np.array_equal(boundary_map(square()), expected)
    assert boundary_map(square()).sum() == 16


def test_boundary_of_one_pixel_is_four_pixels():
    assert np.array_equal(boundary_map(pixels((10, 10), [(4, 4)])), pixels((10, 10), [(3, 3), (3, 4), (4, 3), (4, 4)]))


def test_boundary_at_the_image_border():
    shape = (6, 8)
    # Left half: only the column at its right edge; nothing along the top, left or bottom border.
    left = np.zeros(shape, bool)
    left[:, :4] = True
    assert np.array_equal(boundary_map(left), pixels(shape, [(r, 3) for r in range(6)]))
    # Bottom-right block: the row above it (from the diagonal corner) and the column left of it.
    block = np.zeros(shape, bool)
    block[3:, 4:] = True
    expected = pixels(shape, [(2, c) for c in range(3, 8)] + [(r, 3) for r in range(3, 6)])
    assert np.array_equal(boundary_map(block), expected)
    # The whole frame has no contour at all.
    assert not boundary_map(np.ones(shape, bool)).any()


def _boundary_by_loops(mask: np.ndarray) -> np.ndarray:
    """The toolkit's rule written pixel by pixel."""
    h, w = mask.shape

    def at(r, c):
        return bool(mask[r, c]) if r < h and c < w else False

    out = np.zeros_like(mask, dtype=bool)
    for r in range(h):
        for c in range(w):
            if r == h - 1 and c == w - 1:
                continue
            if r == h - 1:
                out[r, c] = at(r, c) != at(r, c + 1)
            elif c == w - 1:
                out[r, c] = at(r, c) != at(r + 1, c)
            else:
                out[r, c] = at(r, c) != at(r, c + 1) or at(r, c) != at(r + 1, c) or at(r, c) != at(r + 1, c + 1)
    return out


def test_boundary_map_equals_the_rule_pixel_by_pixel():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 5), (5, 1), (7, 9), (12, 5)]:
        for density in (0.2, 0.5, 0.9):
            mask = rng.random(shape) < density
            assert np.array_equal(boundary_map(mask), _boundary_by_loops(mask)), (shape, density)


# ---- disk and tolerance -------------------------------------------------------------------------


def test_disk():
    assert np.array_equal(disk(1), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8))
    assert np.array_equal(
        disk(2),
        np.array([[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], np.uint8),
    )
    assert disk(8).sum() == 197  # lattice points with x^2 + y^2 <= 64


def test_tolerance_is_a_fraction_of_the_diagonal():
    assert tolerance_pixels(480, 854) == 8  # ceil(0.008 * 979.6)
    assert tolerance_pixels(10, 10) == 1
    assert tolerance_pixels(480, 854, bound_th=3) == 3
    assert tolerance_pixels(1080, 1920) == 18  # ceil(0.008 * 2202.9)


# ---- J ------------------------------------------------------------------------------------------


def test_jaccard_cases():
    truth = square()  # 16 pixels
    assert jaccard(truth, truth) == 1.0
    assert jaccard(truth, np.zeros_like(truth)) == 0.0  # empty prediction
    assert jaccard(np.zeros_like(truth), truth) == 0.0  # empty ground truth
    assert jaccard(np.zeros_like(truth), np.zeros_like(truth)) == 1.0  # both empty
    shifted = square(cols=(4, 8))  # overlaps in 8 pixels, union 24
    assert jaccard(truth, shifted) == pytest.approx(8 / 24)
    stacked = jaccard(np.stack([truth, truth]), np.stack([truth, shifted]))
    assert stacked.shape == (2,) and stacked[1] == pytest.approx(1 / 3)


def test_jaccard_ignores_void_pixels():
    truth = square()
    void = square(cols=(4, 8))  # the right half of the object and 8 pixels beside it
    prediction = square(cols=(2, 8))  # the object plus the 8 void pixels beside it
    assert jaccard(truth, prediction) == pytest.approx(16 / 24)
    assert jaccard(truth, prediction, void) == 1.0
    # An object entirely in void pixels counts as absent from both: J = 1.
    assert jaccard(truth, np.zeros_like(truth), square()) == 1.0


def test_jaccard_of_one_pixel_objects():
    one = pixels((10, 10), [(4, 4)])
    assert jaccard(one, one) == 1.0
    assert jaccard(one, pixels((10, 10), [(4, 5)])) == 0.0
    assert jaccard(one, pixels((10, 10), [(4, 4), (4, 5)])) == 0.5


# ---- F ------------------------------------------------------------------------------------------


def test_f_measure_empty_cases():
    truth = square()
    empty = np.zeros_like(truth)
    assert f_measure(truth, truth) == 1.0
    assert f_measure(truth, empty) == 0.0  # empty prediction: precision 1, recall 0
    assert f_measure(empty, truth) == 0.0  # empty ground truth: precision 0, recall 1
    assert f_measure(empty, empty) == 1.0  # both empty


def test_f_measure_of_one_pixel_objects():
    # 10x10: tolerance ceil(0.008 * 14.1) = 1 pixel (a cross). The contours of two pixels two
    # columns apart are {(3,3),(3,4),(4,3),(4,4)} and {(3,5),(3,6),(4,5),(4,6)}: (3,5) and (4,5)
    # are within the cross of the other contour, the rest are not, so P = R = 1/2 and F = 1/2.
    truth = pixels((10, 10), [(4, 4)])
    assert f_measure(truth, truth) == 1.0
    assert f_measure(truth, pixels((10, 10), [(4, 6)])) == pytest.approx(0.5)
    assert f_measure(truth, pixels((10, 10), [(4, 7)])) == 0.0
    # One column apart: every contour pixel is next to the other's.
    assert f_measure(truth, pixels((10, 10), [(4, 5)])) == 1.0


def test_f_measure_with_void_pixels():
    truth = square()
    void = square(cols=(4, 6))  # the object's right half
    prediction = square(cols=(2, 4))  # its left half
    # Without void, the contours differ by two columns on the right (tolerance 1 pixel).
    assert f_measure(truth, prediction) < 1.0
    # With the right half void, both masks are the left half.
    assert f_measure(truth, prediction, void) == 1.0


def test_f_measure_at_the_image_border():
    shape = (6, 8)
    full = np.ones(shape, bool)
    empty = np.zeros(shape, bool)
    # A full-frame object has no contour, so an empty prediction has a "matching" empty contour:
    # F = 1 while J = 0 (the toolkit's definition, kept as is).
    assert f_measure(full, empty) == 1.0
    assert jaccard(full, empty) == 0.0
    left = np.zeros(shape, bool)
    left[:, :4] = True
    # Left half versus left 5 columns: contours at columns 3 and 4, within 1 pixel of each other.
    wider = np.zeros(shape, bool)
    wider[:, :5] = True
    assert f_measure(left, wider) == 1.0
    # Left 6 columns: contour at column 5, two away: nothing matches.
    widest = np.zeros(shape, bool)
    widest[:, :6] = True
    assert f_measure(left, widest) == 0.0


def _f_by_distances(truth, prediction, radius):
    """F with matching by explicit distances between contour pixels."""
    t = np.argwhere(boundary_map(truth))
    p = np.argwhere(boundary_map(prediction))
    if len(t) == 0 and len(p) == 0:
        return 1.0
    if len(t) == 0 or len(p) == 0:
        return 0.0
    d2 = ((p[:, None, :] - t[None, :, :]) ** 2).sum(-1)
    precision = (d2.min(axis=1) <= radius**2).mean()
    recall = (d2.min(axis=0) <= radius**2).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("shape", [(30, 40), (61, 37)])
def test_f_measure_equals_matching_by_distance(shape):
    rng = np.random.default_rng(1)
    radius = tolerance_pixels(*shape)
    for _ in range(10):
        truth = np.zeros(shape, bool)
        prediction = np.zeros(shape, bool)
        for mask in (truth, prediction):
            for _ in range(3):
                r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
                mask[r : r + rng.integers(1, 12), c : c + rng.integers(1, 12)] = True
        assert f_measure(truth, prediction) == pytest.approx(_f_by_distances(truth, prediction, radius), abs=1e-12)
    for bound in (2, 5):
        assert f_measure(truth, prediction, bound_th=bound) == pytest.approx(_f_by_distances(truth, prediction, bound))


# ---- statistics ---------------------------------------------------------------------------------


def test_decay_bins_overlap_at_their_edges():
    assert decay_bins(10) == [slice(0, 3), slice(2, 6), slice(5, 8), slice(7, 10)]
    assert decay_bins(4) == [slice(0, 2), slice(1, 3), slice(2, 3), slice(2, 4)]
    assert decay_bins(1) == [slice(0, 1)] * 4


def test_statistics_recall_and_decay():
    values = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], float)
    stats = statistics(values)
    assert stats.mean == pytest.approx(0.4)
    assert stats.recall == pytest.approx(0.4)
    assert stats.decay == pytest.approx(1.0)  # first bin frames 0-2, last bin frames 7-9
    # Recall counts frames strictly above 0.5.
    assert statistics([0.5, 0.6]).recall == 0.5
    assert statistics([0.5, 0.5]).recall == 0.0
    # Four frames: bins 0-1 and 2-3.
    assert statistics([1.0, 0.5, 0.25, 0.0]).decay == pytest.approx(0.75 - 0.125)
    # A score that rises over time has a negative decay.
    assert statistics(np.linspace(0, 1, 20)).decay < 0
    assert statistics([0.7]) == (pytest.approx(0.7), 1.0, 0.0)


def test_statistics_skip_nan_in_the_mean():
    stats = statistics([1.0, math.nan, 0.0])
    assert stats.mean == 0.5
    assert stats.recall == pytest.approx(1 / 3)  # a NaN frame is not above the threshold


# ---- a sequence of labels ------------------------------------------------------------------------


def test_score_labels_per_object():
    truth = np.zeros((2, 10, 10), np.uint8)
    truth[:, 2:6, 2:6] = 1
    truth[:, 7:9, 7:9] = 2
    prediction = truth.copy()
    prediction[1][prediction[1] == 2] = 0  # object 2 lost in the second frame
    j, f = score_labels(truth, prediction, num_objects=2)
    assert j.shape == f.shape == (2, 2)
    assert np.array_equal(j, [[1, 1], [1, 0]])
    assert np.array_equal(f, [[1, 1], [1, 0]])


def test_score_labels_objects_never_predicted_score_as_empty():
    truth = np.zeros((1, 10, 10), np.uint8)
    truth[0, 2:6, 2:6] = 1
    truth[0, 7:9, 7:9] = 2
    prediction = (truth == 1).astype(np.uint8)
    j, _ = score_labels(truth, prediction, num_objects=3)  # object 3 absent from both: J = 1
    assert np.array_equal(j[:, 0], [1, 0, 1])


def test_score_labels_void_label_255():
    truth = np.zeros((1, 10, 10), np.uint8)
    truth[0, 2:6, 2:6] = 1
    truth[0, 2:6, 6:8] = 255
    prediction = np.zeros_like(truth)
    prediction[0, 2:6, 2:8] = 1  # the object and the void beside it
    j, _ = score_labels(truth, prediction, 1)
    assert j[0, 0] == 1.0
    j, _ = score_labels(truth, prediction, 1, ScoreOptions(void="background"))
    assert j[0, 0] == pytest.approx(16 / 24)


def test_score_labels_single_object_merges_labels():
    truth = np.zeros((1, 10, 10), np.uint8)
    truth[0, 2:6, 2:4] = 1
    truth[0, 2:6, 4:6] = 2
    prediction = np.zeros_like(truth)
    prediction[0, 2:6, 2:6] = 255
    j, f = score_labels(truth, prediction, 1, ScoreOptions(single_object=True))
    assert j.shape == (1, 1) and j[0, 0] == 1.0 and f[0, 0] == 1.0


def test_score_labels_rejects_an_id_not_in_the_ground_truth():
    truth = np.zeros((2, 10, 10), np.uint8)
    truth[:, 2:6, 2:6] = 1
    prediction = truth.copy()
    prediction[1, 0, 0] = 3
    with pytest.raises(InputError, match="object id 3 .*frame 1.*objects 1..1"):
        score_labels(truth, prediction, 1)
