import math

import numpy as np
import pytest

from skin_lightning.data.split import stratified_folds
from skin_lightning.results.stats import (
    bootstrap_intervals,
    holm,
    mcnemar_exact,
    mean_sd,
    paired_bootstrap_difference,
    point_metrics,
)

NUM_CLASSES = 8


def noisy_predictions(per_class: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels; exactly `accuracy` of each class right, the rest sent to the next class."""
    y_true = np.repeat(np.arange(NUM_CLASSES), per_class)
    y_pred = y_true.copy()
    rng = np.random.default_rng(seed)
    n_wrong = int(round((1 - accuracy) * per_class))
    for k in range(NUM_CLASSES):
        wrong = rng.choice(np.flatnonzero(y_true == k), size=n_wrong, replace=False)
        y_pred[wrong] = (k + 1) % NUM_CLASSES
    return y_true, y_pred


def width(interval: tuple[float, float]) -> float:
    return interval[1] - interval[0]


# --- point_metrics -----------------------------------------------------------


def test_point_metrics_hand_computed():
    # class 3 has no support (absent from every average), class 4 is predicted but absent.
    y_true = [0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2, 4]
    m = point_metrics(y_true, y_pred, num_classes=5)
    assert set(m) == {"accuracy", "balanced_accuracy", "macro_f1", "recall/0", "recall/1", "recall/2"}
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["recall/0"] == pytest.approx(2 / 3)
    assert m["recall/1"] == pytest.approx(1 / 2)
    assert m["recall/2"] == pytest.approx(1 / 2)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)
    # F1 = 2TP / (support + predicted): class 0: 4/5, class 1: 2/4, class 2: 2/4.
    assert m["macro_f1"] == pytest.approx((4 / 5 + 2 / 4 + 2 / 4) / 3)


def test_never_predicted_present_class_has_f1_zero():
    y_true = [0, 0, 1, 1]
    y_pred = [0, 0, 0, 0]
    m = point_metrics(y_true, y_pred, num_classes=2)
    # class 0: F1 = 2*2 / (2 + 4) = 2/3; class 1: never predicted -> 0.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert m["recall/1"] == 0.0


# --- bootstrap_intervals -----------------------------------------------------


def test_intervals_contain_point_estimates():
    y_true, y_pred = noisy_predictions(per_class=200, accuracy=0.75, seed=1)
    point = point_metrics(y_true, y_pred, NUM_CLASSES)
    intervals = bootstrap_intervals(y_true, y_pred, NUM_CLASSES, seed=3)
    assert set(intervals) == set(point)
    for name, (low, high) in intervals.items():
        assert low < point[name] < high, name


def test_intervals_shrink_with_more_images():
    small = bootstrap_intervals(*noisy_predictions(100, 0.8, seed=0), NUM_CLASSES, n_resamples=500)
    large = bootstrap_intervals(*noisy_predictions(2000, 0.8, seed=0), NUM_CLASSES, n_resamples=500)
    # Standard error scales with 1/sqrt(n): 20x the images -> about 4.5x narrower.
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "recall/0"):
        assert width(large[name]) * 3 < width(small[name]), name


def test_accuracy_interval_matches_binomial_standard_error():
    # Stratified: var(acc) = sum_k (n_k / N)^2 p_k (1 - p_k) / n_k; here all p_k = 0.8, n_k = 250.
    y_true, y_pred = noisy_predictions(per_class=250, accuracy=0.8, seed=2)
    low, high = bootstrap_intervals(y_true, y_pred, NUM_CLASSES, n_resamples=4000)["accuracy"]
    se = math.sqrt(0.8 * 0.2 / y_true.size)
    assert (high - low) == pytest.approx(2 * 1.959964 * se, rel=0.1)


def test_resampling_is_stratified():
    # Class 0 always right, class 1 always wrong: any resample with fixed class counts
    # scores exactly 0.5, whereas resampling the pooled images would not.
    y_true = np.array([0] * 50 + [1] * 50)
    y_pred = np.array([0] * 50 + [0] * 50)
    intervals = bootstrap_intervals(y_true, y_pred, 2, n_resamples=200)
    assert intervals["accuracy"] == (0.5, 0.5)
    assert intervals["balanced_accuracy"] == (0.5, 0.5)


def test_same_seed_same_intervals_different_seed_differs():
    y_true, y_pred = noisy_predictions(per_class=60, accuracy=0.7, seed=4)
    a = bootstrap_intervals(y_true, y_pred, NUM_CLASSES, n_resamples=300, seed=11)
    b = bootstrap_intervals(y_true, y_pred, NUM_CLASSES, n_resamples=300, seed=11)
    c = bootstrap_intervals(y_true, y_pred, NUM_CLASSES, n_resamples=300, seed=12)
    assert a == b
    assert a != c


def test_perfect_classifier_gives_one_one():
    y_true = np.repeat(np.arange(NUM_CLASSES), 30)
    intervals = bootstrap_intervals(y_true, y_true.copy(), NUM_CLASSES, n_resamples=200)
    assert len(intervals) == 3 + NUM_CLASSES
    for name, interval in intervals.items():
        assert interval == (1.0, 1.0), name


def test_confidence_widens_interval():
    y_true, y_pred = noisy_predictions(per_class=100, accuracy=0.7, seed=5)
    narrow = bootstrap_intervals(y_true, y_pred, NUM_CLASSES, confidence=0.5)["accuracy"]
    wide = bootstrap_intervals(y_true, y_pred, NUM_CLASSES, confidence=0.99)["accuracy"]
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


# --- paired_bootstrap_difference ---------------------------------------------


def test_paired_difference_with_itself_is_exactly_zero():
    y_true, y_pred = noisy_predictions(per_class=80, accuracy=0.6, seed=6)
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "recall/3"):
        result = paired_bootstrap_difference(y_true, y_pred, y_pred, NUM_CLASSES, metric=metric)
        assert result == (0.0, 0.0, 0.0)


def test_paired_difference_is_b_minus_a_and_excludes_zero_for_clear_gain():
    y_true, pred_a = noisy_predictions(per_class=100, accuracy=0.7, seed=7)
    pred_b = pred_a.copy()
    wrong = np.flatnonzero(pred_a != y_true)
    pred_b[wrong[::2]] = y_true[wrong[::2]]  # b fixes half of a's mistakes, breaks nothing
    expected = (
        point_metrics(y_true, pred_b, NUM_CLASSES)["balanced_accuracy"]
        - point_metrics(y_true, pred_a, NUM_CLASSES)["balanced_accuracy"]
    )
    diff, low, high = paired_bootstrap_difference(y_true, pred_a, pred_b, NUM_CLASSES)
    assert diff == pytest.approx(expected)
    assert diff == pytest.approx(0.15)
    assert 0 < low < diff < high
    reverse = paired_bootstrap_difference(y_true, pred_b, pred_a, NUM_CLASSES)
    assert reverse == pytest.approx((-diff, -high, -low))


def test_paired_difference_rejects_unknown_metric():
    y_true, y_pred = noisy_predictions(per_class=10, accuracy=0.7, seed=8)
    with pytest.raises(ValueError, match="metric"):
        paired_bootstrap_difference(y_true, y_pred, y_pred, NUM_CLASSES, metric="auroc")


# --- mcnemar_exact -----------------------------------------------------------


def exact_two_sided(b: int, c: int) -> float:
    """Closed form for a symmetric binomial: twice the smaller tail, capped at 1."""
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def discordant(only_a: int, only_b: int, both: int = 5, neither: int = 3) -> tuple[np.ndarray, np.ndarray]:
    correct_a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    correct_b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return np.array(correct_a), np.array(correct_b)


def test_mcnemar_worked_example():
    assert exact_two_sided(1, 9) == 0.021484375
    assert mcnemar_exact(*discordant(1, 9)) == pytest.approx(0.021484375, abs=1e-12)
    assert mcnemar_exact(*discordant(9, 1)) == pytest.approx(0.021484375, abs=1e-12)


@pytest.mark.parametrize(("only_a", "only_b"), [(3, 12), (0, 6), (20, 31), (5, 5)])
def test_mcnemar_matches_closed_form(only_a, only_b):
    assert mcnemar_exact(*discordant(only_a, only_b)) == pytest.approx(
        exact_two_sided(only_a, only_b), rel=1e-9
    )


def test_mcnemar_without_discordant_pairs_is_one():
    assert mcnemar_exact([True, False, True], [True, False, True]) == 1.0


def test_mcnemar_accepts_zero_one_integers():
    a, b = discordant(1, 9)
    assert mcnemar_exact(a.astype(int), b.astype(int)) == pytest.approx(0.021484375)


# --- holm --------------------------------------------------------------------


def test_holm_worked_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_is_capped_and_monotone():
    # sorted 0.02, 0.3, 0.7 -> 3*0.02, 2*0.3, 1*0.7; then a running max and a cap at 1.
    assert holm([0.7, 0.02, 0.3]) == pytest.approx([0.7, 0.06, 0.6])
    assert holm([0.6, 0.4]) == pytest.approx([0.8, 0.8])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_holm_single_and_empty():
    assert holm([0.04]) == [0.04]
    assert holm([]) == []


@pytest.mark.parametrize("bad", [[0.1, 1.5], [-0.1], [float("nan")]])
def test_holm_rejects_invalid_p_values(bad):
    with pytest.raises(ValueError, match="p_values"):
        holm(bad)


# --- mean_sd -----------------------------------------------------------------


def test_mean_sd_known_numbers():
    mean, sd, n = mean_sd([2, 4, 4, 4, 5, 5, 7, 9])
    assert mean == 5.0
    assert sd == pytest.approx(math.sqrt(32 / 7))
    assert n == 8


def test_mean_sd_single_value_has_nan_sd():
    mean, sd, n = mean_sd([0.83])
    assert mean == 0.83 and math.isnan(sd) and n == 1


# --- stratified_folds --------------------------------------------------------


def test_folds_disjoint_covering_stratified():
    labels = np.array([0] * 23 + [1] * 7 + [2] * 2 + [3] * 11)
    labels = np.random.default_rng(0).permutation(labels)
    folds = stratified_folds(labels, n_folds=5, seed=0)
    assert len(folds) == 5
    joined = np.concatenate(folds)
    assert np.array_equal(np.sort(joined), np.arange(labels.size))  # disjoint and covering
    for fold in folds:
        assert np.array_equal(fold, np.sort(fold))
    for k in np.unique(labels):
        counts = [np.count_nonzero(labels[fold] == k) for fold in folds]
        assert max(counts) - min(counts) <= 1, (k, counts)
    sizes = [fold.size for fold in folds]
    assert max(sizes) - min(sizes) <= 1


def test_folds_depend_only_on_seed():
    labels = np.repeat(np.arange(4), 10)
    first = stratified_folds(labels, 3, seed=5)
    again = stratified_folds(labels, 3, seed=5)
    other = stratified_folds(labels, 3, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))


@pytest.mark.parametrize("n_folds", [1, 0, -2])
def test_folds_need_at_least_two(n_folds):
    with pytest.raises(ValueError, match="n_folds"):
        stratified_folds([0, 1, 0, 1], n_folds, seed=0)


def test_folds_cannot_outnumber_labels():
    with pytest.raises(ValueError, match="n_folds"):
        stratified_folds([0, 1, 0], 4, seed=0)


# --- input validation --------------------------------------------------------

GOOD = np.array([0, 1, 2, 1])


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: point_metrics(GOOD, GOOD[:3], 3), "y_pred"),
        (lambda: point_metrics(GOOD, [0, 1, 3, 1], 3), "y_pred"),
        (lambda: point_metrics([0, -1, 2, 1], GOOD, 3), "y_true"),
        (lambda: point_metrics([], [], 3), "y_true"),
        (lambda: point_metrics(GOOD.astype(float), GOOD, 3), "y_true"),
        (lambda: point_metrics(GOOD.reshape(2, 2), GOOD.reshape(2, 2), 3), "y_true"),
        (lambda: point_metrics(GOOD, GOOD, 0), "num_classes"),
        (lambda: bootstrap_intervals(GOOD, GOOD[:3], 3), "y_pred"),
        (lambda: bootstrap_intervals(GOOD, [0, 1, 5, 1], 3), "y_pred"),
        (lambda: bootstrap_intervals([], [], 3), "y_true"),
        (lambda: bootstrap_intervals(GOOD, GOOD, 3, n_resamples=0), "n_resamples"),
        (lambda: bootstrap_intervals(GOOD, GOOD, 3, confidence=1.0), "confidence"),
        (lambda: paired_bootstrap_difference(GOOD, GOOD, GOOD[:2], 3), "pred_b"),
        (lambda: paired_bootstrap_difference(GOOD, [0, 9, 2, 1], GOOD, 3), "pred_a"),
        (lambda: mcnemar_exact([True, False], [True]), "correct_b"),
        (lambda: mcnemar_exact([], []), "correct_a"),
        (lambda: mcnemar_exact([0, 2], [1, 1]), "correct_a"),
        (lambda: mean_sd([]), "values"),
        (lambda: stratified_folds([], 2, seed=0), "labels"),
        (lambda: stratified_folds([0.5, 1.0], 2, seed=0), "labels"),
    ],
)
def test_bad_inputs_name_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
