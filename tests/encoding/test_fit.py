"""Codes fitted to their input's atoms and cell (the atom fit of checked codes)."""

from __future__ import annotations

import pytest
import torch

from nesf.api import NeSF
from nesf.data.batch import CrystalBatch
from nesf.encoding import fit
from nesf.encoding.fit import _polished_offset, fit_atoms_and_cell
from nesf.reconstruction.reconstruct import shell_offsets


def _offsets(model, batch, z):
    """Mean distance (A) between each input atom and the decoder's polished estimate around it, per crystal."""
    s = model.settings
    crystal, atom = torch.nonzero(batch.mask, as_tuple=True)
    inverse = torch.linalg.inv(batch.lattice)[crystal]
    shells = shell_offsets(s.polish_radii, fit.DIRECTIONS, z.dtype, z.device)
    with torch.no_grad():
        off = _polished_offset(model.model, z[crystal], batch.cart[crystal, atom], inverse, shells, 0.5 * s.nms_radius)
    return torch.zeros(len(z)).index_add_(0, crystal, off.norm(dim=1)) / batch.mask.sum(1)


def test_the_fit_brings_the_polished_atoms_to_the_inputs_and_the_cell_with_them(mp_codes):
    model, _, batch, z = mp_codes
    s = model.settings
    fitted = fit_atoms_and_cell(model.model, z, batch, s.polish_radii, 0.5 * s.nms_radius, iterations=5)
    before, after = _offsets(model, batch, z), _offsets(model, batch, fitted)
    assert bool((after < 0.5 * before).all()), (before, after)
    with torch.no_grad():
        cell = model.model.lattice_normalized(fitted) - model.model.normalize_lattice(batch.lattice_params)
    assert float(cell.abs().max()) < 1e-3  # the cell is the input's too
    assert bool(((fitted - z).norm(dim=1) <= fit.MAX_MOVE * z.norm(dim=1)).all())
    # each crystal is fitted on its own, and no iterations leave the codes as they were
    one = CrystalBatch.from_crystals([mp_codes[1][0]], model.vocab)
    alone = fit_atoms_and_cell(model.model, z[:1], one, s.polish_radii, 0.5 * s.nms_radius, iterations=5)
    assert torch.allclose(alone, fitted[:1], atol=1e-4)
    assert fit_atoms_and_cell(model.model, z, batch, s.polish_radii, 1.0, iterations=0) is z


def test_checked_codes_with_the_atom_fit_decode_closer_to_their_inputs(classic):
    model = NeSF.load("mp").with_refinement(steps=10, restarts=1)
    zno = [c for c in classic if c.id == "ZnO-wurtzite-conventional"]
    assert model.refinement.atom_fit  # mp's own default
    plain = model.with_settings(symmetrize=False).with_refinement(atom_fit=False)
    fitted = plain.with_refinement(atom_fit=True)
    back_plain, back_fitted = plain.reconstruct_crystals(zno), fitted.reconstruct_crystals(zno)
    assert fitted.restart_counts["atoms_fitted"] == 1 and fitted.restart_counts["lattice_fitted"] == 1
    assert "atoms_fitted" not in plain.restart_counts
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False)
    rms = [matcher.get_rms_dist(zno[0].to_pymatgen(), b[0].to_pymatgen()) for b in (back_plain, back_fitted)]
    assert rms[0] is not None and rms[1] is not None
    assert rms[1][0] < rms[0][0]  # atoms placed closer to the input's


def test_atom_deviation_is_the_mean_distance_to_the_nearest_atom_of_the_same_element(classic):
    from dataclasses import replace

    import numpy as np

    from nesf.encoding.checked import atom_deviations
    from nesf.fields.frame import get_frame

    frame = get_frame("periodic")
    nacl = next(c for c in classic if c.id == "NaCl-rocksalt-primitive")

    def atom_deviation(true, decoded, frame):
        return atom_deviations([true], [decoded], frame)[0]

    assert atom_deviation(nacl, nacl, frame) == pytest.approx(0.0, abs=1e-9)
    moved = nacl.cart.copy()
    moved[0] += [0.1, 0.0, 0.0]
    assert atom_deviation(nacl, replace(nacl, cart=moved), frame) == pytest.approx(0.1 / nacl.n_atoms, abs=1e-6)
    only_na = replace(nacl, cart=nacl.cart[nacl.numbers == 11], numbers=nacl.numbers[nacl.numbers == 11])
    assert atom_deviation(nacl, only_na, frame) == np.inf  # an element the decoded crystal lacks


def test_the_atom_fit_is_counted_in_the_work_of_a_code_and_bounded_by_the_budget(classic):
    zno = [c for c in classic if c.id == "ZnO-wurtzite-conventional"]
    model = NeSF.load("mp").with_refinement(steps=10, restarts=1)
    work = {}
    for atom_fit in (False, True):
        m = model.with_refinement(atom_fit=atom_fit)
        m.encode_crystals(zno)
        work[atom_fit] = m.restart_counts["cost_per_crystal_x100"]
    assert work[True] > work[False]  # the fit's Jacobians are work
    tight = model.with_refinement(atom_fit=True, max_cost=1.0)  # room for the encoder's code only
    tight.encode_crystals(zno)
    assert tight.restart_counts.get("atoms_fitted", 0) == 0 and tight.restart_counts["cost_max_x100"] <= 125


def test_an_encoder_code_fitted_to_its_atoms_before_its_check_is_decoded_once(classic, monkeypatch):
    zno = [c for c in classic if c.id == "ZnO-wurtzite-conventional"]
    base = NeSF.load("mp").with_settings(symmetrize=False)
    base = base.with_refinement(check_encoder=True, fit_encoder_code=True, atom_fit=True, check_symmetry=False)
    back, calls = {}, {}
    for first in (False, True):
        model = base.with_refinement(fit_encoder_atoms=first, atom_fit_directions=8)
        decode, seen = model.decode_crystals, []

        def counted(z, ids=None, progress=False, _decode=decode, _seen=seen, **kwargs):
            _seen.append(len(z))
            return _decode(z, ids=ids, progress=progress, **kwargs)

        monkeypatch.setattr(model, "decode_crystals", counted)
        back[first], calls[first] = model.reconstruct_crystals(zno)[0], seen
        assert model.restart_counts["encoder_kept"] == 1 and model.restart_counts["atoms_fitted"] == 1
    assert calls == {False: [1, 1], True: [1]}  # fitted after the check: one more decode
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False)
    rms = [matcher.get_rms_dist(zno[0].to_pymatgen(), back[k].to_pymatgen()) for k in (False, True)]
    assert rms[1] is not None and rms[1][0] < 1.5 * rms[0][0] + 0.01  # as close as the fit after the check
    with pytest.raises(ValueError, match="atom_fit_directions"):
        base.with_refinement(atom_fit_directions=0)
