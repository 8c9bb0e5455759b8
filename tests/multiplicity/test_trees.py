"""Exhaustive depth-2 tree space (Rashomon ratio over binary features): objectives by hand."""

import numpy as np
import pytest

from tasks.multiplicity.metrics import MultiplicityError, rashomon_ratio
from tasks.multiplicity.trees import depth2_tree_objectives


def test_objectives_and_redundant_splits_by_hand():
    # y equals feature 0; feature 1 is noise. 1 + m^3 = 9 trees.
    x = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    y = np.array([0, 1, 1, 0])
    obj, red = depth2_tree_objectives(x, y, lam=0.1)
    # leaf (2/4 wrong + 1 leaf); root f0 with two leaves (0 wrong + 2 leaves); root f0, true leaf + false
    # split on f1 whose leaves both say 0 (redundant); ...; root f1 with two leaves (2/4 wrong, both say 0)
    assert obj[:3] == pytest.approx([0.6, 0.2, 0.3])
    assert obj[5] == pytest.approx(0.7) and obj[6] == pytest.approx(0.55)
    assert red.tolist() == [False, False, True, True, True, True, False, False, False]
    # the best tree is the root split on f0; within eps = 0.1 only it and the redundant 3-leaf trees
    assert rashomon_ratio(obj, eps=0.1) == pytest.approx(3 / 9)
    assert int(((obj <= obj.min() + 0.1 + 1e-12) & ~red).sum()) == 1


def test_bad_input_is_named():
    with pytest.raises(MultiplicityError, match="0/1"):
        depth2_tree_objectives([[0, 2]], [1], 0.1)
    with pytest.raises(MultiplicityError, match="lam"):
        depth2_tree_objectives([[0, 1]], [1], -1.0)
    with pytest.raises(MultiplicityError, match=r"\(n,\)"):
        depth2_tree_objectives([[0, 1], [1, 0]], [1], 0.1)
