"""Uncertainty measures on hand-built ensembles."""

import numpy as np
import pytest

from tasks.multiplicity import uncertainty as un
from tasks.multiplicity.metrics import MultiplicityError


def H(p):
    p = np.asarray(p, float)
    return -(p * np.log(p)).sum()


def test_identical_members_have_no_epistemic_uncertainty():
    p = np.tile(np.array([[[0.7, 0.2, 0.1]]]), (4, 1, 1))
    for m in un.MEASURES:
        u = un.uncertainty(p, m)
        assert u["epistemic"][0] == pytest.approx(0.0, abs=1e-12)
        assert u["total"][0] == pytest.approx(H([0.7, 0.2, 0.1]))


def test_bma_measure_is_entropy_of_mean_and_mutual_information():
    p = np.array([[[0.9, 0.1]], [[0.3, 0.7]]])
    u = un.uncertainty(p, "D")
    assert u["total"][0] == pytest.approx(H([0.6, 0.4]))
    assert u["aleatoric"][0] == pytest.approx((H([0.9, 0.1]) + H([0.3, 0.7])) / 2)
    kl = lambda a, b: float((np.asarray(a) * np.log(np.asarray(a) / np.asarray(b))).sum())  # noqa: E731
    assert u["epistemic"][0] == pytest.approx((kl([0.9, 0.1], [0.6, 0.4]) + kl([0.3, 0.7], [0.6, 0.4])) / 2)
    # B: expected KL of the members from member 0; C: expected pairwise KL
    b = un.uncertainty(p, "B")
    assert b["epistemic"][0] == pytest.approx(kl([0.3, 0.7], [0.9, 0.1]) / 2)
    c = un.uncertainty(p, "C")
    assert c["epistemic"][0] == pytest.approx((kl([0.3, 0.7], [0.9, 0.1]) + kl([0.9, 0.1], [0.3, 0.7])) / 4)
    a = un.uncertainty(p, "A")
    assert a["total"][0] == pytest.approx(H([0.9, 0.1])) and a["epistemic"][0] == 0


def test_unknown_measure_and_bad_probabilities_are_refused():
    p = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    with pytest.raises(MultiplicityError, match="unknown uncertainty measure 'E'"):
        un.uncertainty(p, "E")
    with pytest.raises(MultiplicityError, match="sum to 1"):
        un.uncertainty(np.array([[[0.5, 0.6]]]), "D")
    with pytest.raises(MultiplicityError, match="ragged"):
        un.uncertainty([np.full((2, 2), 0.5), np.full((3, 2), 0.5)], "D")
