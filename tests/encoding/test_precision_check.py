"""Checked codes that also check how close their decoded atoms sit to the input's (``precision_tolerance``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nesf.api import NeSF
from nesf.encoding.checked import atom_deviations, composition
from nesf.encoding.refine import RefineSettings

IDS = ("ZnO-wurtzite-conventional", "NiAs-conventional")


@pytest.fixture(scope="module")
def mp_inner(classic):
    """The shipped `mp` with a short checked search, and two classic crystals in its setting."""
    model = NeSF.load("mp").with_refinement(steps=10, restarts=1, restart_steps=10, check_symmetry=False)
    inner, _ = model.to_model_setting([c for c in classic if c.id in IDS])
    return model, inner


def test_the_check_never_leaves_atoms_farther_or_the_composition_changed(mp_inner, checked_encode):
    model, inner = mp_inner
    r = model.refinement
    plain, plain_out, _ = checked_encode(model, r, inner)
    # a tolerance no decode meets: every crystal decoded to its composition tries the restarts
    codes, out, counts = checked_encode(model, replace(r, precision_tolerance=1e-6, precision_restarts=2), inner)
    frame = model.model.frame
    assert all(composition(p) == composition(c) for p, c in zip(plain_out, inner))
    assert counts["imprecise"] == len(inner)
    before, after = atom_deviations(inner, plain_out, frame), atom_deviations(inner, out, frame)
    assert np.all(after <= before + 1e-12)
    assert all(composition(o) == composition(c) for o, c in zip(out, inner))
    for k in range(len(inner)):  # a crystal keeps its code unless a restart placed its atoms closer
        same = np.array_equal(plain[k].numpy(), codes[k].numpy())
        assert same == (after[k] == before[k])
    assert counts["precision_improved"] == sum(a < b for a, b in zip(after, before))


def test_a_tolerance_every_decode_meets_changes_nothing(mp_inner, checked_encode):
    model, inner = mp_inner
    r = model.refinement
    plain, _, _ = checked_encode(model, r, inner)
    codes, _, counts = checked_encode(model, replace(r, precision_tolerance=10.0), inner)
    assert counts["imprecise"] == 0 and counts["precision_improved"] == 0
    assert np.array_equal(plain.numpy(), codes.numpy())


def test_the_check_is_off_by_default_and_rejects_negative_settings():
    assert RefineSettings().precision_tolerance == 0
    with pytest.raises(ValueError, match="precision_tolerance"):
        RefineSettings(precision_tolerance=-0.1)
    with pytest.raises(ValueError, match="precision_restarts"):
        RefineSettings(precision_restarts=-1)
