"""Checked codes that also check the space group of their finished decode (``check_symmetry``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nesf.api import NeSF
from nesf.encoding.refine import RefineSettings
from nesf.reconstruction.symmetry import space_group

IDS = ("NaCl-rocksalt-primitive", "ZnO-wurtzite-conventional")


@pytest.fixture(scope="module")
def mp_inner(classic):
    """The shipped `mp` with a short checked search (no precision check), and two classic crystals in its setting."""
    model = NeSF.load("mp").with_refinement(steps=10, restarts=1, symmetry_restarts=1, precision_tolerance=0)
    inner, _ = model.to_model_setting([c for c in classic if c.id in IDS])
    return model, inner


def _shaken(crystals):
    """Crystals with every atom moved 0.3 A along its own fixed direction: no decode keeps its group."""
    rng = np.random.default_rng(0)
    out = []
    for c in crystals:
        step = rng.normal(size=c.cart.shape)
        step *= 0.3 / np.linalg.norm(step, axis=1, keepdims=True)
        cart = c.cart + step
        out.append(replace(c, cart=cart))
    return out


def test_a_code_whose_decode_never_keeps_the_group_stays_as_it_was(mp_inner, checked_encode):
    model, inner = mp_inner
    r = model.refinement
    plain, _, _ = checked_encode(model, r, inner, finish=None)
    checked, decoded, counts = checked_encode(model, replace(r, check_symmetry=True), inner, finish=_shaken)
    assert counts["symmetry_lost"] == len(inner)  # each has its composition, none its group
    assert counts["symmetry_recovered"] == 0
    assert np.array_equal(plain.numpy(), checked.numpy())  # every try failed: the codes stay
    assert {space_group(c).number for c in inner} == {225, 186}  # the check compares real groups


def test_a_lost_group_is_won_back_by_another_code(mp_inner, checked_encode):
    model, inner = mp_inner
    calls = []

    def lose_first(crystals):  # the kept codes' decodes lose their groups; the tries' keep them
        calls.append(len(crystals))
        return _shaken(crystals) if len(calls) == 1 else list(crystals)

    r = replace(model.refinement, check_symmetry=True)
    plain, _, _ = checked_encode(model, r, inner, finish=None)
    codes, decoded, counts = checked_encode(model, r, inner, finish=lose_first)
    assert counts["symmetry_lost"] == len(inner) and counts["symmetry_recovered"] == len(inner)
    assert len(calls) >= 2
    for c, d in zip(inner, decoded):
        assert space_group(d).number == space_group(c).number  # the kept code's decode has the input's group
    assert not np.array_equal(plain.numpy(), codes.numpy())  # other codes than the first


def test_the_check_is_off_by_default_and_its_counts_reach_the_model(classic):
    assert not RefineSettings().check_symmetry
    with pytest.raises(ValueError, match="symmetry_restarts"):
        RefineSettings(symmetry_restarts=-1)
    nacl = [c for c in classic if c.id == IDS[0]]
    model = NeSF.load("mp").with_refinement(steps=10, restarts=1, check_symmetry=True)
    model.encode_crystals(nacl)
    assert model.restart_counts["symmetry_lost"] == 0  # NaCl comes back in Fm-3m
