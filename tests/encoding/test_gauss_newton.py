"""Gauss-Newton refinement of latent codes (``RefineSettings(solver="gauss_newton")``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nesf.api import NeSF
from nesf.data.batch import CrystalBatch
from nesf.encoding.gauss_newton import _normal_equations, gauss_newton_latents
from nesf.encoding.refine import RefineSettings, refine_latents
from nesf.training.sampling import QuerySampler


def _objective(model, batch, z):
    """Each crystal's position error and species cross-entropy at one fixed draw of queries ``[B]``."""
    cfg = model.train_cfg
    q = QuerySampler(cfg, model.model.frame, None, shared_jitter=True).sample(batch, torch.Generator().manual_seed(99))
    inverse = torch.linalg.inv(batch.lattice)
    net = model.model
    with torch.no_grad():
        p = net.position_field(net.position_decoder.latent_part(z), q.pos_points, q.pos_index, inverse)
        logits = net.species_field(net.species_decoder.latent_part(z), q.spec_points, q.spec_index, inverse)
    n = len(z)
    pos = torch.zeros(n).index_add_(0, q.pos_index, (p - q.pos_target).pow(2).mean(1))
    pos = pos / torch.bincount(q.pos_index, minlength=n)
    ce = torch.zeros(n).index_add_(0, q.spec_index, F.cross_entropy(logits, q.spec_target, reduction="none"))
    return cfg.w_position * pos + cfg.w_species * ce / torch.bincount(q.spec_index, minlength=n)


def test_gauss_newton_steps_bring_a_disturbed_code_back_down_its_objective(mp_codes):
    model, inner, batch, z = mp_codes
    start = z + 0.3 * z.std(dim=0, keepdim=True) * torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    settings = RefineSettings(solver="gauss_newton", steps=3, species_per_atom=8, uniform_queries=256, damping=1.0)
    refined = refine_latents(model.model, batch, start, model.train_cfg, settings)
    before, after = _objective(model, batch, start), _objective(model, batch, refined)
    assert bool((after < 0.9 * before).all()) and float(after.sum()) < 0.75 * float(before.sum()), (before, after)
    # each crystal is refined on its own queries: alone it gets the same code
    one = CrystalBatch.from_crystals(inner[1:2], model.vocab)
    alone = gauss_newton_latents(model.model, one, start[1:2], model.train_cfg, settings)
    assert torch.allclose(alone, refined[1:2], atol=1e-4)
    none = RefineSettings(solver="gauss_newton", steps=0)
    assert refine_latents(model.model, batch, start, model.train_cfg, none) is start


def test_normal_equations_are_each_crystals_own_sums():
    g = torch.Generator().manual_seed(1)
    jac, res = torch.randn(9, 3, 5, generator=g), torch.randn(9, 3, generator=g)
    index = torch.tensor([2, 0, 2, 1, 0, 2, 2, 1, 0])
    normal, rhs = _normal_equations(jac, res, index, 4)
    for b in range(4):
        rows, r = jac[index == b].reshape(-1, 5), res[index == b].reshape(-1)
        assert torch.allclose(normal[b].float(), rows.T @ rows, atol=1e-5)
        assert torch.allclose(rhs[b].float(), rows.T @ r, atol=1e-5)
    assert bool((normal[3] == 0).all())  # a crystal without queries


def test_solver_settings_are_validated():
    with pytest.raises(ValueError, match="solver"):
        RefineSettings(solver="newton")
    with pytest.raises(ValueError, match="damping"):
        RefineSettings(solver="gauss_newton", damping=0.0)
    with pytest.raises(ValueError, match="restart_from"):
        RefineSettings(restart_from="first")
    assert RefineSettings(restart_from="last").restart_from == "last"
    with pytest.raises(ValueError, match="restart_solver"):
        RefineSettings(restart_solver="sgd")
    r = RefineSettings(restart_solver="gauss_newton", restart_steps=1, symmetry_restart_steps=60)
    assert (r.restart(1).solver, r.restart(1).steps) == ("gauss_newton", 1)
    sym = r.symmetry_restart(7)  # the space-group check's restarts keep the first solver, with their own steps
    assert (sym.solver, sym.steps, sym.seed, sym.restarts) == ("adam", 60, 7, 0)
    assert RefineSettings().symmetry_restart(2) == RefineSettings().restart(2)  # the default: as before


def test_an_encoder_code_fitted_before_its_check_is_decoded_once(monkeypatch):
    from nesf.data.examples import demo_crystals

    fast = NeSF.load("mp").with_refinement(check_encoder=True, atom_fit=False, check_symmetry=False, restarts=2)
    crystals = fast.prepare(demo_crystals(("NaCl-rocksalt", "Si-diamond", "Cu-fcc")))
    for fit_first, decodes in ((False, [3, 3]), (True, [3])):
        model = fast.with_refinement(fit_encoder_code=fit_first)
        decode, calls = model.decode_crystals, []

        def counted(z, ids=None, progress=False, _decode=decode, _calls=calls, **kwargs):
            _calls.append(len(z))
            return _decode(z, ids=ids, progress=progress, **kwargs)

        monkeypatch.setattr(model, "decode_crystals", counted)
        back = model.reconstruct_crystals(crystals)
        assert calls == decodes  # the encoder's codes pass: one decode each, or one more for the cell fit
        assert model.restart_counts["encoder_kept"] == 3
        for c, b in zip(crystals, back):  # the cell is fitted either way
            assert np.allclose(c.lattice_params[:3], b.lattice_params[:3], atol=2e-3), (c.id, b.lattice_params)


def test_restarts_from_the_last_code_chain_on_each_other(monkeypatch):
    import nesf.encoding.checked as checked

    model = NeSF.load("mp").with_refinement(restart_from="last", restarts=3, steps=2, restart_steps=1, lattice_fit=0)
    model = model.with_refinement(solver="gauss_newton", uniform_queries=64)
    from nesf.data.examples import demo_crystals

    crystals = model.prepare(demo_crystals(("NaCl-rocksalt",)))
    starts, ends = [], []
    refine = checked.refine_latents

    def recorded(net, batch, start, *args, **kwargs):
        out = refine(net, batch, start, *args, **kwargs)
        starts.append(start.clone())
        ends.append(out.clone())
        return out

    decode = model.decode_crystals

    def always_short(z, ids=None, progress=False, **kwargs):  # every decode misses an atom: all restarts run
        out = decode(z, ids=ids, progress=progress, **kwargs)
        return [replace(c, cart=c.cart[1:], numbers=np.asarray(c.numbers)[1:]) for c in out]

    monkeypatch.setattr(checked, "refine_latents", recorded)
    monkeypatch.setattr(model, "decode_crystals", always_short)
    model.encode_crystals(crystals)
    assert len(starts) == 4  # the first refinement and three restarts
    for k in range(1, 4):
        assert torch.equal(starts[k], ends[k - 1])


def test_the_trade_off_benchmark_reads_the_fast_preset_back(monkeypatch):
    from pathlib import Path

    from nesf.encoding.presets import FAST_REFINEMENT, fast_decoding
    from nesf.reconstruction.settings import ReconstructionSettings

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import _common
    import fast_codes

    defaults = {**ReconstructionSettings().to_dict(), **RefineSettings().to_dict()}
    name, changes = _common.parse_changes(fast_codes.expand_presets("fast:@fast,restarts=3", 0.7), defaults)
    assert name == "fast" and changes == {**FAST_REFINEMENT, **fast_decoding(0.7), "restarts": 3}


def test_the_fast_grid_is_coarser_than_the_models_own_and_never_finer_than_its_floor():
    from nesf.encoding.presets import FAST_DECODING, fast, fast_decoding

    assert fast_decoding(0.7)["grid_spacing"] == 0.9  # mp
    assert fast_decoding(0.5)["grid_spacing"] == 0.8  # the specialists: the floor
    assert fast_decoding(1.0)["grid_spacing"] == 1.2
    assert {k: v for k, v in fast_decoding(0.5).items() if k != "grid_spacing"} == FAST_DECODING
    mp = NeSF.load("mp")
    quick = fast(mp)
    assert quick.settings.grid_spacing == 0.9 and quick.settings.merge_tol == 0.2
    assert mp.settings.grid_spacing == 0.7  # the model itself is left as it was
