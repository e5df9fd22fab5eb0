"""Class ids as scikit-learn users pass them: any integers or strings, mapped via classes_.

The encoding is a relabelling, so a fit with ids 5..9 or strings must be the fit with
ids 0..4 exactly (same codes, same seed), with the known classes' ids restored by
``classes_`` and new components given ids that cannot collide with them.
"""

import numpy as np
import pytest

from gmm import GeneralizedCategoryDiscovery, SemiSupervisedGMM, SemiSupervisedKMeans
from mixtures.base import component_classes, encode_semi_labels

NAMES = np.array(["ant", "bee", "cat", "dog", "eel"], dtype=object)


def _data(k=7, known=5, d=3, n=40, seed=0):
    """k well-separated blobs; the first `known` classes have half their samples labelled."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 8.0, (k, d))
    X = np.concatenate([rng.normal(c, 1.0, (n, d)) for c in centres])
    truth = np.repeat(np.arange(k), n)
    y = np.where((truth < known) & (np.arange(k * n) % 2 == 0), truth, -1)
    return X, y


def _relabel(y, kind):
    if kind == "shifted":
        return np.where(y >= 0, y + 5, -1)
    if kind == "strings":
        out = np.empty(len(y), dtype=object)
        out[y >= 0] = NAMES[y[y >= 0]]
        out[y < 0] = None
        return out
    if kind == "float_nan":
        return np.where(y >= 0, y.astype(float), np.nan)
    raise AssertionError(kind)


def test_encode_semi_labels_maps_any_ids_to_sorted_codes():
    enc = encode_semi_labels(np.array([9, -1, 5, 9, 7]), 5)
    assert enc.codes.tolist() == [2, -1, 0, 2, 1]
    assert enc.known.tolist() == [5, 7, 9]
    enc = encode_semi_labels(["b", None, "a"], 3)
    assert enc.codes.tolist() == [1, -1, 0] and enc.known.tolist() == ["a", "b"]
    enc = encode_semi_labels(np.array([2.0, np.nan, -1.0]), 3)
    assert enc.codes.tolist() == [0, -1, -1] and enc.known.tolist() == [2]
    enc = encode_semi_labels(["a", "?", "b"], 3, unlabelled="?")
    assert enc.codes.tolist() == [0, -1, 1]
    assert encode_semi_labels(None, 2).codes.tolist() == [-1, -1]


@pytest.mark.parametrize(
    "y, kwargs, match",
    [
        ([0.5, 1.0], {}, "non-integer float"),
        (np.array(["a", 1], dtype=object), {}, "mixes label types"),
        ([0, 1, 2], {"n_components": 2}, "3 known classes but n_components=2"),
        ([0, 1], {}, r"shape \(3,\)"),
    ],
)
def test_encode_semi_labels_rejects_what_it_cannot_map(y, kwargs, match):
    n = 3 if match.startswith("shape") else len(y)
    with pytest.raises(ValueError, match=match):
        encode_semi_labels(y, n, **kwargs)


def test_component_classes_never_collide_with_known_ids():
    assert component_classes(np.arange(3), 5).tolist() == [0, 1, 2, 3, 4]
    assert component_classes(np.array([-4, 10]), 4).tolist() == [-4, 10, 11, 12]
    assert component_classes(np.array([], dtype=np.int64), 2).tolist() == [0, 1]
    got = component_classes(np.array(["new_1", "x"]), 5).tolist()
    assert got == ["new_1", "x", "new_0", "new_2", "new_3"]
    assert len(set(got)) == 5


@pytest.mark.parametrize("kind", ["shifted", "strings", "float_nan"])
def test_ssgmm_partition_does_not_depend_on_the_label_ids(kind):
    X, y = _data()
    kw = dict(n_components=9, max_rounds=3, random_state=0)
    ref = SemiSupervisedGMM(**kw).fit(X, y)
    other = SemiSupervisedGMM(**kw).fit(X, _relabel(y, kind))
    assert other.n_components_ == ref.n_components_
    np.testing.assert_allclose(other.means_, ref.means_, rtol=1e-12)
    ids = {"shifted": np.arange(5, 10), "strings": NAMES, "float_nan": np.arange(5)}[kind]
    assert other.classes_[:5].tolist() == list(ids)
    # the same partition, and the ids of ref's components mapped one to one
    mapping = dict(zip(ref.classes_.tolist(), other.classes_.tolist()))
    assert [mapping[v] for v in ref.labels_.tolist()] == other.labels_.tolist()
    assert [mapping[v] for v in ref.predict(X).tolist()] == other.predict(X).tolist()
    lab = y >= 0
    np.testing.assert_array_equal(other.labels_[lab], ids[y[lab]])
    new = set(other.classes_[5:].tolist())
    assert new and not new & set(ids.tolist())
    # predict_proba's columns follow classes_; sample() speaks the same ids
    assert other.predict_proba(X).shape[1] == other.classes_.size
    _, z = other.sample(20, random_state=0)
    assert set(z.tolist()) <= set(other.classes_.tolist())


def test_ssgmm_bayesian_fit_keeps_user_ids():
    X, y = _data(k=3, known=2, d=2, n=30)
    m = SemiSupervisedGMM(3, split_merge=False, inference="svi", num_steps=200, random_state=0).fit(
        X, _relabel(y, "strings")
    )
    assert m.classes_.tolist() == ["ant", "bee", "new_0"]
    np.testing.assert_array_equal(m.labels_[y >= 0], NAMES[y[y >= 0]])
    assert set(m.labels_.tolist()) == {"ant", "bee", "new_0"}


@pytest.mark.parametrize("kind", ["shifted", "strings"])
def test_ss_kmeans_partition_does_not_depend_on_the_label_ids(kind):
    X, y = _data()
    ref = SemiSupervisedKMeans(7, random_state=0).fit(X, y)
    other = SemiSupervisedKMeans(7, random_state=0).fit(X, _relabel(y, kind))
    np.testing.assert_allclose(other.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    mapping = dict(zip(ref.classes_.tolist(), other.classes_.tolist()))
    assert [mapping[v] for v in ref.labels_.tolist()] == other.labels_.tolist()
    assert [mapping[v] for v in ref.predict(X).tolist()] == other.predict(X).tolist()
    expect = [5, 6, 7, 8, 9, 10, 11] if kind == "shifted" else [*NAMES, "new_0", "new_1"]
    assert other.classes_.tolist() == expect


def test_gcd_maps_labels_through_classes():
    X, y = _data(k=4, known=2, d=4, n=30)
    kw = dict(n_epochs=1, steps_per_epoch=3, hidden_dim=16, batch_size=32, random_state=0)
    ref = GeneralizedCategoryDiscovery(**kw).fit(X, y)
    other = GeneralizedCategoryDiscovery(**kw).fit(X, _relabel(y, "strings"))
    np.testing.assert_allclose(other.prototypes_, ref.prototypes_, rtol=1e-10)
    assert other.classes_[:2].tolist() == ["ant", "bee"]
    mapping = dict(zip(ref.classes_.tolist(), other.classes_.tolist()))
    assert [mapping[v] for v in ref.predict(X).tolist()] == other.predict(X).tolist()
    np.testing.assert_array_equal(other.labels_[y >= 0], NAMES[y[y >= 0]])


def test_cluster_accuracy_and_split_accept_string_ids():
    from gmm import cluster_accuracy, make_gcd_split

    truth = np.array([0, 0, 1, 2, 2, 1])
    pred = np.array([3, 3, 0, 5, 5, 5])
    want = cluster_accuracy(truth, pred, truth < 1)
    got = cluster_accuracy(NAMES[truth], np.array(["x", "x", "a", "q", "q", "q"]), truth < 1)
    assert got == want == {"all": 5 / 6, "old": 1.0, "new": 0.75}
    a = make_gcd_split(truth, [0, 1], 0.5, random_state=3)
    b = make_gcd_split(NAMES[truth], NAMES[[0, 1]], 0.5, random_state=3)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.old_mask, b.old_mask)
