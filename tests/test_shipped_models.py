"""The models shipped inside the package: they load offline, carry cards, and round-trip crystals."""

from __future__ import annotations

import pytest

from nesf.api import NeSF
from nesf.data.examples import demo_crystals
from nesf.metrics.matcher import match_rmse
from nesf.registry import available_models

SHIPPED = ("carbon_24", "icsg3d", "lim_l6", "mp", "perov_5")


def test_the_five_models_ship_and_the_general_one_is_the_default():
    from nesf import DEFAULT_MODEL
    from nesf.demo import DEMO_MODEL

    assert set(SHIPPED) <= set(available_models())
    assert DEFAULT_MODEL == DEMO_MODEL == "mp"
    model = NeSF.load()
    assert model.info["source"].endswith("mp.pt") and model.model.cfg.primitive_cell


def test_mp_reads_every_crystal_system_and_conventional_cells():
    """Hexagonal and trigonal cells, and the 8-atom cubes of rock salt, diamond and zinc blende, come back."""
    model = NeSF.load("mp")
    names = ("NaCl-rocksalt", "Si-diamond", "GaAs-zincblende", "ZnO-wurtzite", "NiAs", "Mg-hcp", "TiO2-rutile")
    crystals = model.prepare(demo_crystals(names))
    back = model.reconstruct_crystals(crystals)
    assert [b.n_atoms for b in back] == [c.n_atoms for c in crystals]  # in the input's (conventional) cell
    rmse = match_rmse(crystals, back, n_jobs=1)
    assert sum(r is not None for r in rmse) >= 6, rmse
    assert set(model.domain.systems) >= {"triclinic", "monoclinic", "trigonal", "hexagonal", "cubic"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_with_its_card(name):
    model = NeSF.load(name)
    card = model.card
    for key in ("summary", "data", "train_command", "eval_command", "test_metrics", "machine"):
        assert card.get(key), key
    assert model.frame == "periodic"
    if len(model.vocab) > 1:  # decoding is limited to the training elements
        assert model.model.unseen_species is not None
    assert "training" not in model.info  # inference weights only


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_figures_were_made_with_the_settings_the_model_loads_with(name):
    """The test evaluation a model's card quotes (``benchmarks/results/shipped``) used its recorded defaults.

    A refinement or decoding record written into the weights without evaluating again, or an
    evaluation made with other settings, would make the card's figures those of another search.
    """
    import json
    from pathlib import Path

    record = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "shipped" / f"{name}.json").read_text())
    model = NeSF.load(name)

    def plain(value):  # noqa: ANN001, ANN202 - JSON lists against the settings' tuples
        return list(value) if isinstance(value, (list, tuple)) else value

    pairs = ((record["refinement"], model.refinement.to_dict()), (record["settings"], model.settings.to_dict()))
    for used, loaded in pairs:
        differ = {k: (v, loaded[k]) for k, v in used.items() if k in loaded and plain(v) != plain(loaded[k])}
        assert not differ, differ


def test_lim_l6_round_trips_simple_crystals():
    model = NeSF.load("lim_l6")
    crystals = model.prepare(demo_crystals(("NaCl-rocksalt", "Cu-fcc", "MgO-rocksalt", "Fe-bcc")))
    back = model.reconstruct_crystals(crystals)
    assert [b.n_atoms for b in back] == [c.n_atoms for c in crystals]
    rmse = match_rmse(crystals, back, n_jobs=1)
    assert all(r is not None and r < 0.05 for r in rmse), rmse


def test_perov_5_round_trips_the_perovskite_frame():
    model = NeSF.load("perov_5")
    crystals = model.prepare(demo_crystals(("SrTiO3-perovskite",)))
    back = model.reconstruct_crystals(crystals)
    assert back[0].n_atoms == 5 and back[0].formula.endswith("O3")
    assert abs(back[0].volume - crystals[0].volume) < 0.05 * crystals[0].volume


@pytest.mark.parametrize("name", ["lim_l6", "mp", "perov_5"])
def test_shipped_models_do_not_care_how_a_cell_is_set(name):
    """Demo crystals with another origin (Cl at the origin, arbitrary shifts) or permuted axes come back alike.

    Only the crystals inside the model's training domain: outside it (rock salt for perov_5) the
    checked codes spend every restart, which costs time and says nothing about the setting.
    """
    import numpy as np

    from nesf.data.setting import resettle, shift_origin

    model = NeSF.load(name)
    assert model.setting == "canonical"
    names = ("NaCl-rocksalt", "TiO2-rutile", "ZnO-wurtzite", "SrTiO3-perovskite", "CsCl", "MgO-rocksalt")
    crystals = [c for c in demo_crystals(names) if set(c.numbers.tolist()) <= set(model.vocab.numbers)]
    crystals = [c for c, why in zip(crystals, model.check_domain(crystals)) if not why]
    assert crystals
    rng = np.random.default_rng(0)
    variants = {
        "given": crystals,
        "shifted": [shift_origin(c, [0.5, 0.5, 0.5] if c.id.startswith("NaCl") else rng.random(3)) for c in crystals],
        "axes": [resettle(c, "axes", rng) for c in crystals],
    }
    verdicts = {}
    for kind, inputs in variants.items():
        prepared = model.prepare(inputs)
        back = model.reconstruct_crystals(prepared)
        verdicts[kind] = [r is not None for r in match_rmse(prepared, back, n_jobs=1)]
    assert verdicts["shifted"] == verdicts["given"] and verdicts["axes"] == verdicts["given"]


@pytest.mark.parametrize("name", ["carbon_24", "perov_5"])
def test_shipped_models_carry_their_latent_prior(name, tmp_path):
    from nesf.cli import main
    from nesf.registry import shipped_prior_path

    model = NeSF.load(name)
    path = shipped_prior_path(model.info["source"])
    assert path is not None and path.name == f"{name}.pt"
    model.prior()  # fitted to this very model (vocabulary, latent size and checkpoint SHA-256 agree)
    out = tmp_path / "samples"
    assert main(["sample", "--model", name, "--n", "3", "--out", str(out), "--quiet", "--grid", "0"]) == 0
    summary = (out / "summary.json").read_text()
    assert f"weights/priors/{name}.pt" in summary and '"n_requested": 3' in summary


def test_checked_refinement_refines_again_where_the_decoded_composition_is_off(monkeypatch):
    """A code whose crystal comes back with the wrong composition is refined again from the encoder's."""
    from dataclasses import replace

    import numpy as np
    import torch

    # no budget: every step and restart; the cell fit alone (the atom fit: tests/encoding/test_fit.py)
    model = NeSF.load("mp").with_refinement(max_cost=0, atom_fit=False)
    crystals = model.prepare(demo_crystals(("NaCl-rocksalt", "Si-diamond", "Cu-fcc")))
    unchecked = model.with_refinement(restarts=0)
    first = unchecked.encode_crystals(crystals)
    # these come back right at once: nothing is refined again, the codes are the unchecked ones
    # (refined, then fitted to the input's cell)
    assert torch.equal(model.encode_crystals(crystals), first)
    assert model.restart_counts["restarted"] == model.restart_counts["recovered"] == 0
    # the check alone (no lattice fit): make the first decode of every crystal lose an atom; each
    # is refined again and recovers
    first = model.with_refinement(restarts=0, lattice_fit=0).encode_crystals(crystals)
    checked = model.with_refinement(restarts=2, lattice_fit=0)
    decode, calls = checked.decode_crystals, []

    lost = []

    def lossy(z, ids=None, progress=False, **kwargs):
        out = decode(z, ids=ids, progress=progress, **kwargs)
        calls.append(len(z))
        if len(calls) == 1:
            out = [replace(c, cart=c.cart[1:], numbers=np.asarray(c.numbers)[1:]) for c in out]
            lost.extend(out)
        return out

    monkeypatch.setattr(checked, "decode_crystals", lossy)
    codes = checked.encode_crystals(crystals)
    counts = checked.restart_counts
    assert (counts["crystals"], counts["restarted"], counts["recovered"], counts["encoder_kept"]) == (3, 3, 3, 0)
    assert calls == [3, 3]  # one restart sufficed for all
    assert not torch.allclose(codes, first)  # the restart's codes (other queries, more steps)
    # the restart went on from the first code, with the lost atom's queries weighted up
    monkeypatch.undo()
    assert torch.allclose(codes, _first_restart(checked, crystals, first, lost), atol=1e-6)
    # a reconstruction is the decoded checked code: decoding the code again gives the same crystals
    # (the checks decode without symmetrising; the crystals kept are finished once)
    codes, decoded = model._encode_in_setting(model.to_model_setting(crystals)[0])
    decoded = model.finish_crystals(decoded, exact_cells=True)
    again = model.decode_crystals(codes, exact_cells=True)
    assert [d.n_atoms for d in decoded] == [a.n_atoms for a in again] == [2, 2, 1]  # primitive cells
    assert all(np.allclose(a.lattice, d.lattice) and np.allclose(a.cart, d.cart) for a, d in zip(again, decoded))
    assert [b.n_atoms for b in model.reconstruct_crystals(crystals)] == [c.n_atoms for c in crystals]


def test_checked_refinement_keeps_the_closest_code_when_no_restart_passes(monkeypatch):
    """Where no code gives the input's composition, the one nearest in atom count is kept."""
    from dataclasses import replace

    import numpy as np
    import torch

    model = NeSF.load("mp").with_refinement(restarts=2, lattice_fit=0, max_cost=0)  # the check alone
    crystals = model.prepare(demo_crystals(("NaCl-rocksalt", "Si-diamond")))
    first = model.with_refinement(restarts=0).encode_crystals(crystals)
    decode, calls, lost = model.decode_crystals, [], []

    def scripted(z, ids=None, progress=False, **kwargs):
        """First code and second restart lose an atom; the first restart has every atom, of wrong elements."""
        out = decode(z, ids=ids, progress=progress, **kwargs)
        calls.append(len(z))
        if len(calls) == 2:
            return [replace(c, numbers=np.asarray(c.numbers) + 1) for c in out]
        out = [replace(c, cart=c.cart[1:], numbers=np.asarray(c.numbers)[1:]) for c in out]
        lost.extend(out if len(calls) == 1 else [])
        return out

    monkeypatch.setattr(model, "decode_crystals", scripted)
    codes, decoded = model._encode_in_setting(model.to_model_setting(crystals)[0])
    counts = model.restart_counts
    assert calls == [2, 2, 2] and (counts["crystals"], counts["restarted"], counts["recovered"]) == (2, 2, 0)
    assert [d.n_atoms for d in decoded] == [2, 2]  # the first restart's crystals: the right count
    monkeypatch.undo()
    assert torch.allclose(codes, _first_restart(model, crystals, first, lost), atol=1e-6)


def test_encoder_fallback_keeps_the_encoders_code_where_the_refined_one_lost_an_atom(monkeypatch):
    """``encoder_fallback``: a failed first refinement tries the encoder's code before any restart."""
    from dataclasses import replace

    import numpy as np
    import torch

    model = NeSF.load("mp").with_refinement(restarts=3, lattice_fit=0, max_cost=0, encoder_fallback=True)
    crystals = model.prepare(demo_crystals(("NaCl-rocksalt", "Si-diamond", "Cu-fcc")))
    own = model.with_refinement(steps=0).encode_crystals(crystals)
    decode, calls = model.decode_crystals, []

    def refined_lose_an_atom(z, ids=None, progress=False, **kwargs):
        out = decode(z, ids=ids, progress=progress, **kwargs)
        calls.append(len(z))
        if len(calls) == 1:  # the refined codes' decodes
            out = [replace(c, cart=c.cart[1:], numbers=np.asarray(c.numbers)[1:]) for c in out]
        return out

    monkeypatch.setattr(model, "decode_crystals", refined_lose_an_atom)
    codes = model.encode_crystals(crystals)
    counts = model.restart_counts
    assert calls == [3, 3]  # the refined codes, then the encoder's; no restart
    assert (counts["encoder_kept"], counts["restarted"], counts["recovered"]) == (3, 0, 0)
    assert torch.equal(codes, own)
    # without the fallback the same failures take restarts
    calls.clear()
    plain = model.with_refinement(encoder_fallback=False)
    monkeypatch.setattr(plain, "decode_crystals", refined_lose_an_atom)
    plain.encode_crystals(crystals)
    assert plain.restart_counts["restarted"] == 3 and plain.restart_counts["encoder_kept"] == 0


def test_checked_codes_stay_within_their_budget(monkeypatch):
    """A crystal whose decodes never pass stops refining once its work nears ``max_cost`` one-pass decodes."""
    from dataclasses import replace

    import numpy as np
    import torch

    model = NeSF.load("mp")
    crystals = model.prepare(demo_crystals(("NaCl-rocksalt", "Si-diamond", "Cu-fcc")))
    # each crystal's share of a decode's work does not depend on the other crystals decoded with it
    z = model.with_refinement(steps=0).encode_crystals(crystals)
    together, alone = [], []
    model.decode_crystals(z, field_queries=together)
    for i in range(len(z)):
        model.decode_crystals(z[i : i + 1], field_queries=alone)
    assert together == alone and min(together) > 0

    calls: list[int] = []

    def lossy(decode):
        def run(z, ids=None, progress=False, **kwargs):
            calls.append(len(z))
            out = decode(z, ids=ids, progress=progress, **kwargs)
            return [replace(c, cart=c.cart[1:], numbers=np.asarray(c.numbers)[1:]) for c in out]

        return run

    seen = {}
    for max_cost in (0.0, 8.0, 3.0, 1.0):
        calls.clear()
        m = model.with_refinement(restarts=4, max_cost=max_cost)
        monkeypatch.setattr(m, "decode_crystals", lossy(m.decode_crystals))
        codes = m.encode_crystals(crystals)
        counts = m.restart_counts
        seen[max_cost] = (len(calls), counts["cost_max_x100"], codes)
        assert counts["recovered"] == 0
        if max_cost == 1.0:  # the encoder's code, checked once: no refinement, no lattice fit
            assert calls == [3] and counts["cost_max_x100"] == 100, counts
        if max_cost:
            assert counts["budget_cut"] > 0 and counts["cost_max_x100"] <= 100 * max_cost * 1.25, counts
            monkeypatch.setattr(m, "decode_crystals", lossy(model.decode_crystals))
            assert torch.equal(m.encode_crystals(crystals), codes)  # the count is the same on any machine
        else:  # no bound: the refined code, four restarts and the lattice-fitted code, all decoded
            assert calls == [3] * 6 and counts["budget_cut"] == 0 and counts["restarted"] == 3
    assert seen[3.0][0] <= seen[8.0][0] < seen[0.0][0] and seen[3.0][1] <= seen[8.0][1] < seen[0.0][1]


def _first_restart(model, crystals, start, decoded):
    """Codes of a first restart from codes ``start`` whose crystals came back as ``decoded``."""
    import torch

    from nesf.data.batch import CrystalBatch
    from nesf.encoding.refine import refine_latents
    from nesf.metrics.paper import missed_atoms

    inner = model.to_model_setting(crystals)[0]
    batch = CrystalBatch.from_crystals(inner, model.vocab)
    weights = torch.ones(batch.mask.shape)
    for j, (c, missed) in enumerate(zip(inner, missed_atoms(inner, decoded, model.frame))):
        assert missed.sum() == 1  # the atom the decode lost
        weights[j, : c.n_atoms] += (model.refinement.missed_atom_weight - 1) * torch.as_tensor(missed)
    settings = model.refinement.restart(1)
    assert settings.position_weight == model.refinement.restart_position_weight
    return refine_latents(model.model, batch, start, model.train_cfg, settings, model.bbox, weights)
