"""Model contracts: exact periodicity, the latent-once decoder, lattice heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nesf.models.autoencoder import NeSFModel
from nesf.models.config import ModelConfig, get_preset
from nesf.models.layers import QueryConditionedMLP


def _small(frame: str, **kw) -> ModelConfig:
    base = dict(
        frame=frame,
        latent_dim=16,
        encoder_atom_dims=(16, 16),
        encoder_shared_dims=(32,),
        encoder_head_dims=(32,),
        position_dims=(32, 32, 32),
        species_dims=(32,),
        fourier_k=4,
        pe_levels=4,
    )
    base.update(kw)
    return ModelConfig(**base)


def test_periodic_decoder_is_exactly_periodic():
    torch.manual_seed(0)
    model = NeSFModel(_small("periodic"), n_species=5).double().eval()
    lattice = torch.tensor(
        [[[4.0, 0.0, 0.0], [-2.0, 3.4641, 0.0], [0.0, 0.0, 6.5]], [[3.0, 0.2, 0.1], [1.5, 4.0, 0.3], [2.0, -1.0, 9.0]]],
        dtype=torch.float64,
    )
    z = torch.randn(2, 16, dtype=torch.float64)
    field = model.bind(z, lattice)
    pts = torch.rand(2, 50, 3, dtype=torch.float64) @ lattice
    shift = torch.randint(-3, 4, (2, 50, 3)).double() @ lattice
    p0, p1 = field.position(pts), field.position(pts + shift)
    s0, s1 = field.species(pts), field.species(pts + shift)
    assert torch.allclose(p0, p1, atol=1e-9)
    assert torch.allclose(s0, s1, atol=1e-9)
    # and the field is not trivially constant
    assert (p0[:, 1:] - p0[:, :-1]).abs().max() > 1e-4


def test_paper_decoder_is_not_periodic():
    torch.manual_seed(0)
    model = NeSFModel(_small("paper"), n_species=3).double().eval()
    z = torch.randn(1, 16, dtype=torch.float64)
    lattice = torch.eye(3, dtype=torch.float64).unsqueeze(0) * 4
    field = model.bind(z, lattice)
    pts = torch.rand(1, 20, 3, dtype=torch.float64) * 4
    assert not torch.allclose(field.position(pts), field.position(pts + 4.0), atol=1e-6)


def test_latent_once_decoder_matches_concatenation():
    """The decoder equals the textbook MLP that concatenates [h, q] (and [z, q]) at every layer."""
    torch.manual_seed(1)
    mlp = QueryConditionedMLP(latent_dim=6, query_dim=4, dims=(8, 8, 5), out_dim=3, act="relu").double()
    z = torch.randn(3, 6, dtype=torch.float64)
    index = torch.tensor([0, 0, 1, 2, 2, 2])
    q = torch.randn(6, 4, dtype=torch.float64)
    got = mlp(mlp.latent_part(z), index, q)
    # reference: explicit concatenation with stacked weights
    w0 = torch.cat([mlp.latent_in.weight, mlp.query_in[0].weight], dim=1)
    h = torch.relu(torch.cat([z[index], q], dim=1) @ w0.t() + mlp.query_in[0].bias)
    for i, layer in enumerate(mlp.hidden):
        w = torch.cat([layer.weight, mlp.query_in[i + 1].weight], dim=1)
        h = torch.relu(torch.cat([h, q], dim=1) @ w.t() + mlp.query_in[i + 1].bias)
    ref = mlp.out(h)
    assert torch.allclose(got, ref, atol=1e-12)


def test_lattice_heads_and_presets():
    model_cfg, train_cfg = get_preset("paper")
    assert model_cfg.frame == "paper" and model_cfg.norm == "batch" and len(model_cfg.position_dims) == 8
    assert model_cfg.pe_levels == 10 and train_cfg.epochs == 3200 and train_cfg.lr_step_epochs == 640
    assert (train_cfg.w_position, train_cfg.w_species, train_cfg.w_length, train_cfg.w_angle) == (10.0, 0.1, 1.0, 1.0)
    model = NeSFModel(_small("periodic", vae=True), n_species=4)
    z = torch.randn(5, 16)
    params = model.decode_lattice(z)
    assert params.shape == (5, 6)
    assert torch.all(params[:, :3] > 0) and torch.all(params[:, 3:] > 0) and torch.all(params[:, 3:] < torch.pi)


def test_structure_factor_pool_is_invariant_to_order_and_lattice_shifts():
    from nesf.models.encoder import StructureFactorPool, half_miller_indices

    h = half_miller_indices(2)
    assert h.shape == ((5**3 - 1) // 2 + 1, 3)
    keys = {tuple(v.tolist()) for v in h}
    assert all(tuple((-v).tolist()) not in keys for v in h if v.abs().sum() > 0)  # one of each +-h pair
    pool = StructureFactorPool(n_species=3, h_max=2, channels=2).double()
    g = torch.Generator().manual_seed(0)
    frac = torch.rand(1, 5, 3, generator=g, dtype=torch.float64)
    species = torch.tensor([[0, 1, 2, 1, 0]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    ref = pool(frac, species, mask)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(pool(frac[:, perm], species[:, perm], mask), ref)
    shift = torch.randint(-3, 4, (1, 5, 3), generator=g).double()
    assert torch.allclose(pool(frac + shift, species, mask), ref, atol=1e-9)
    padded = pool(
        torch.cat([frac, torch.rand(1, 2, 3, dtype=torch.float64)], 1),
        torch.cat([species, torch.zeros(1, 2, dtype=torch.long)], 1),
        torch.cat([mask, torch.zeros(1, 2, dtype=torch.bool)], 1),
    )
    assert torch.allclose(padded, ref)
    moved = frac.clone()
    moved[0, 0, 0] += 0.1
    assert not torch.allclose(pool(moved, species, mask), ref)


def test_latent_at_every_layer_starts_as_the_published_decoder_and_then_differs():
    """Zero-initialised per-layer shifts: the same field at first; ``[B, D] -> [B, H1 + ... + HL]`` latent part."""
    torch.manual_seed(2)
    plain = QueryConditionedMLP(latent_dim=6, query_dim=4, dims=(8, 8, 5), out_dim=3, act="silu").double()
    every = QueryConditionedMLP(
        latent_dim=6, query_dim=4, dims=(8, 8, 5), out_dim=3, act="silu", latent_every_layer=True
    ).double()
    every.load_state_dict(plain.state_dict(), strict=False)
    z = torch.randn(3, 6, dtype=torch.float64)
    index = torch.tensor([0, 1, 1, 2])
    q = torch.randn(4, 4, dtype=torch.float64)
    assert every.latent_part(z).shape == (3, 8 + 8 + 5)
    assert torch.allclose(every(every.latent_part(z), index, q), plain(plain.latent_part(z), index, q), atol=1e-12)
    with torch.no_grad():
        every.latent_shift.weight.normal_()
    moved = every(every.latent_part(z), index, q)
    assert not torch.allclose(moved, plain(plain.latent_part(z), index, q), atol=1e-6)
    # queries of one crystal only see that crystal's latent
    alone = every(every.latent_part(z[1:2]), torch.tensor([0, 0]), q[1:3])
    assert torch.allclose(alone, moved[1:3], atol=1e-12)


def test_model_with_latent_at_every_layer_stays_exactly_periodic():
    torch.manual_seed(3)
    model = NeSFModel(_small("periodic", latent_every_layer=True), n_species=4).double().eval()
    with torch.no_grad():
        model.position_decoder.latent_shift.weight.normal_(0.0, 0.3)
    lattice = torch.tensor([[[4.0, 0.0, 0.0], [1.0, 3.5, 0.0], [0.5, 0.3, 5.0]]], dtype=torch.float64)
    field = model.bind(torch.randn(1, 16, dtype=torch.float64), lattice)
    pts = torch.rand(1, 30, 3, dtype=torch.float64) @ lattice
    shift = torch.randint(-2, 3, (1, 30, 3)).double() @ lattice
    assert torch.allclose(field.position(pts), field.position(pts + shift), atol=1e-9)


def test_canonical_setting_needs_the_periodic_frame():
    import pytest

    with pytest.raises(ValueError, match="periodic frame"):
        _small("paper", setting="canonical")
    with pytest.raises(ValueError, match="primitive_cell is part of the canonical setting"):
        _small("periodic", setting="as_given", primitive_cell=True)
    assert get_preset("default")[0].setting == "canonical"
    assert get_preset("default")[0].canonical_origin == "roomiest"
    assert get_preset("paper")[0].setting == "as_given"
    assert get_preset("default", frame="paper")[0].setting == "as_given"


def test_default_preset_is_the_latent_set_with_averaged_weights_and_the_paper_preset_is_untouched():
    model, train = get_preset("default")
    assert (model.latent_tokens, model.latent_dim) == (8, 192)
    assert (train.ema_decay, train.label_smoothing) == (0.999, 0.1)
    paper_model, paper_train = get_preset("paper")
    assert paper_model.latent_tokens == 0 and not paper_model.latent_every_layer
    assert (paper_train.ema_decay, paper_train.label_smoothing, paper_train.lr) == (0.0, 0.0, 1e-3)
    assert paper_model.position_dims == (256,) + (128,) * 7 and paper_model.norm == "batch"


def test_latent_tokens_shapes_periodicity_and_permutation_invariance():
    import pytest

    torch.manual_seed(5)
    cfg = _small("periodic", latent_tokens=4, token_attention_dim=8, latent_every_layer=True)
    model = NeSFModel(cfg, n_species=4).double().eval()
    b, n = 2, 5
    lattice = torch.tensor([[[4.0, 0.0, 0.0], [1.0, 3.5, 0.0], [0.5, 0.3, 5.0]]] * b, dtype=torch.float64)
    frac = torch.rand(b, n, 3, dtype=torch.float64)
    cart = frac @ lattice
    species = torch.randint(0, 4, (b, n))
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 3:] = False  # the second crystal has 3 atoms
    params = torch.rand(b, 6, dtype=torch.float64)
    z, _, _ = model.encode(cart, frac, species, mask, params)
    assert z.shape == (b, 16)
    # the encoder ignores the order of the atoms and what padding holds
    perm = torch.tensor([4, 2, 0, 1, 3])
    z_perm, _, _ = model.encode(cart[:, perm], frac[:, perm], species[:, perm], mask[:, perm], params)
    assert torch.allclose(z, z_perm, atol=1e-12)
    junk = frac.clone()
    junk[1, 3:] = 0.77
    assert torch.allclose(model.encode(junk @ lattice, junk, species, mask, params)[0][1], z[1], atol=1e-12)
    # every query sees its crystal's tokens; the fields stay exactly periodic and depend on the tokens
    assert model.position_decoder.latent_part(z).shape == (b, 32 + 64 + 4 * 2 * 8)
    field = model.bind(z, lattice)
    pts = torch.rand(b, 30, 3, dtype=torch.float64) @ lattice
    shift = torch.randint(-2, 3, (b, 30, 3)).double() @ lattice
    assert field.position(pts).shape == (b, 30, 3) and field.species(pts).shape == (b, 30, 4)
    assert torch.allclose(field.position(pts), field.position(pts + shift), atol=1e-9)
    assert torch.allclose(field.species(pts), field.species(pts + shift), atol=1e-9)
    other = z.clone()
    other[:, 12:] += 1.0  # only the last token changes
    assert not torch.allclose(model.bind(other, lattice).position(pts), field.position(pts))
    # a VAE with tokens gives a mean and a log-variance of the code's size
    vae = NeSFModel(_small("periodic", latent_tokens=4, vae=True), n_species=4).double()
    _, mu, logvar = vae.encode(cart, frac, species, mask, params)
    assert mu.shape == logvar.shape == (b, 16)
    with pytest.raises(ValueError, match="latent_tokens"):
        _small("periodic", latent_tokens=5)


def test_a_tiny_token_model_fits_one_crystal():
    """The latent-token design trains: a tiny model fits one crystal's fields to a small error."""
    from dataclasses import replace

    from nesf.data.batch import CrystalBatch
    from nesf.data.examples import demo_crystals
    from nesf.data.prepared import prepare_crystals
    from nesf.training.loop import make_vocab
    from nesf.training.objective import NeSFObjective
    from nesf.training.sampling import QuerySampler
    from small_model import small_configs

    m, t = small_configs()
    m = replace(m, latent_tokens=4, token_attention_dim=8)
    crystals = prepare_crystals(demo_crystals(("NaCl-rocksalt",)), m.frame, "canonical", "roomiest")
    vocab = make_vocab(crystals)
    torch.manual_seed(0)
    model = NeSFModel(m, len(vocab))
    objective = NeSFObjective(model, t)
    batch = CrystalBatch.from_crystals(crystals, vocab)
    sampler = QuerySampler(t, model.frame, None)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(450):
        loss, terms = objective(batch, sampler.sample(batch, torch.Generator().manual_seed(step)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or {k: float(v) for k, v in terms.items()}
    # (a tiny decoder cannot follow the field's jumps at the Voronoi faces: an MSE floor near 0.03 A^2)
    assert float(terms["position"]) < 0.15 * first["position"]
    assert float(terms["species"]) < 0.005


def test_latent_refinement_lowers_the_field_loss_and_is_deterministic(classic):
    import torch.nn.functional as F

    from nesf.api import NeSF
    from nesf.data.batch import CrystalBatch
    from nesf.data.vocab import SpeciesVocab
    from nesf.encoding.refine import NO_REFINEMENT, RefineSettings, refine_latents
    from nesf.models.autoencoder import NeSFModel
    from nesf.models.config import ModelConfig, TrainConfig
    from nesf.training.objective import NeSFObjective
    from nesf.training.sampling import QuerySampler
    from small_model import SMALL_MODEL, SMALL_TRAIN

    torch.manual_seed(0)
    crystals = [c for c in classic if c.n_atoms <= 8][:6]
    vocab = SpeciesVocab.from_crystals(crystals)
    net = NeSFModel(ModelConfig(**SMALL_MODEL), len(vocab))
    cfg = TrainConfig(**SMALL_TRAIN)
    batch = CrystalBatch.from_crystals(crystals, vocab)
    objective, opt = NeSFObjective(net, cfg), torch.optim.Adam(net.parameters(), lr=3e-3)
    sampler = QuerySampler(cfg, net.frame, None)
    for step in range(150):  # a briefly trained network: its decoder responds to its codes
        loss, _ = objective(batch, sampler.sample(batch, torch.Generator().manual_seed(step)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        z0, _, _ = net.encode(batch.cart, batch.frac, batch.species, batch.mask, batch.lattice_params)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    z = refine_latents(net, batch, z0, cfg, RefineSettings(steps=40, lr=0.05))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # only the codes move
    assert not torch.allclose(z, z0)

    def field_loss(code: torch.Tensor) -> float:  # the refined objective, on fresh queries
        s = QuerySampler(cfg, net.frame, None).sample(batch, torch.Generator().manual_seed(99))
        inv = torch.linalg.inv(batch.lattice)
        with torch.no_grad():
            pos = net.position_field(net.position_decoder.latent_part(code), s.pos_points, s.pos_index, inv)
            logits = net.species_field(net.species_decoder.latent_part(code), s.spec_points, s.spec_index, inv)
            lattice = F.mse_loss(net.lattice_normalized(code), net.normalize_lattice(batch.lattice_params))
        return float(10 * F.mse_loss(pos, s.pos_target) + 0.1 * F.cross_entropy(logits, s.spec_target) + 10 * lattice)

    assert field_loss(z) < 0.9 * field_loss(z0)
    assert torch.equal(refine_latents(net, batch, z0, cfg, RefineSettings(steps=40, lr=0.05)), z)  # seeded
    assert refine_latents(net, batch, z0, cfg, NO_REFINEMENT) is z0
    # the API refines by default; steps=0 gives the encoder's code
    model = NeSF(net, vocab, train_cfg=cfg)
    assert model.refinement.steps > 0
    plain = model.with_refinement(steps=0)
    assert torch.allclose(plain.encode_crystals(crystals), z0, atol=1e-6)
    # (without the check's restarts: a briefly trained network fails every check, and each restart decodes)
    assert not torch.allclose(model.with_refinement(restarts=0).encode_crystals(crystals), z0, atol=1e-4)
    with pytest.raises(ValueError, match="negative"):
        RefineSettings(steps=-1)
    with pytest.raises(ValueError, match="restarts must not be negative"):
        RefineSettings(restarts=-1)
    second = RefineSettings(seed=3).restart(2)  # a restart: its own queries, its own steps, no restarts of its own
    assert (second.seed, second.steps, second.lr, second.restarts) == (5, 60, 0.1, 0)
    assert (RefineSettings().position_weight, second.position_weight) == (1.0, 4.0)  # restarts weigh positions up
    with pytest.raises(ValueError, match="position weights must be positive"):
        RefineSettings(restart_position_weight=0.0)
    with pytest.raises(ValueError, match="missed_atom_weight must be at least 1"):
        RefineSettings(missed_atom_weight=0.5)
    with pytest.raises(ValueError, match="restart_from must be"):
        RefineSettings(restart_from="random")
    # weights on the queries around atoms: all 1 is the plain objective, others change the code
    ones, short = torch.ones(batch.mask.shape), RefineSettings(steps=10, lr=0.05)
    plain_code = refine_latents(net, batch, z0, cfg, short)
    assert torch.allclose(refine_latents(net, batch, z0, cfg, short, None, ones), plain_code)
    heavy = ones.clone()
    heavy[0, 0] = 20.0
    weighted = refine_latents(net, batch, z0, cfg, short, None, heavy)
    assert not torch.allclose(weighted[0], plain_code[0], atol=1e-5)
    assert torch.allclose(weighted[1:], plain_code[1:], atol=1e-6)  # each crystal's own objective
    # the queries form one set whatever order the atoms come in: the same refined codes (checked codes with
    # one restart: every code of this briefly trained network fails the check, and each restart decodes)
    checked = model.with_refinement(restarts=1)
    perm = [c.__class__(c.lattice, c.cart[::-1], c.numbers[::-1], c.id) for c in crystals]
    assert not all(np.array_equal(p.numbers, c.numbers) for p, c in zip(perm, crystals))
    together = checked.encode_crystals(crystals)
    assert torch.allclose(checked.encode_crystals(perm), together, atol=1e-5)
    # nor do a crystal's queries and objective depend on the other crystals of its batch
    alone = torch.cat([checked.encode_crystals([c]) for c in crystals])
    reversed_batch = checked.encode_crystals(crystals[::-1]).flip(0)
    assert torch.allclose(alone, together, atol=1e-5) and torch.allclose(reversed_batch, together, atol=1e-5)


def test_missed_atoms_pairs_atoms_one_to_one_across_cell_edges(classic):
    from dataclasses import replace

    from nesf.data.crystal import Crystal
    from nesf.metrics.paper import missed_atoms as missed_in

    def missed_atoms(crystal, decoded, tol=0.5):
        return missed_in([crystal], [decoded], "periodic", tol)[0]

    lattice = np.diag([4.0, 5.0, 6.0])
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.25, 0.5, 0.0], [0.99, 0.2, 0.7]])
    crystal = Crystal(lattice, frac @ lattice, np.array([11, 17, 17, 8]), "x")
    # the same atoms, moved by 0.1 A, across a cell edge and in another order: nothing missed
    moved = (frac[::-1] + [[0.02, 0.0, 0.0]]) % 1.0
    same = Crystal(lattice, moved @ lattice, crystal.numbers[::-1], "y")
    assert not missed_atoms(crystal, same).any()
    # one Cl lost: that one is missed; the other Cl keeps its partner (pairs are one to one)
    lost = replace(same, cart=np.delete(same.cart, 1, axis=0), numbers=np.delete(same.numbers, 1))
    assert missed_atoms(crystal, lost).tolist() == [False, False, True, False]
    # two Cl decoded on one site: only one of them is paired
    one_site = replace(same, cart=np.where(np.arange(4)[:, None] == 1, same.cart[2], same.cart))
    assert missed_atoms(crystal, one_site).sum() == 1
    # an atom of another element at the right place does not count; one too far away neither
    wrong = replace(same, numbers=np.array([8, 17, 17, 12]))  # the Na (last of `same`) became Mg
    assert missed_atoms(crystal, wrong).tolist() == [True, False, False, False]
    far = replace(same, cart=same.cart + [0.0, 0.0, 0.6])
    assert missed_atoms(crystal, far).all() and not missed_atoms(crystal, far, tol=0.7).any()
    empty = Crystal(lattice, np.zeros((0, 3)), np.zeros(0, dtype=int), "empty")
    assert missed_atoms(crystal, empty).all()
    # a decoded crystal in a slightly other cell is compared in fractional coordinates
    stretched = Crystal(lattice * 1.05, moved @ (lattice * 1.05), crystal.numbers[::-1], "z")
    assert not missed_atoms(crystal, stretched).any()


@pytest.mark.parametrize("shared", [False, True])
def test_query_sampler_names_the_atom_each_local_query_was_drawn_around(classic, shared):
    from nesf.data.batch import CrystalBatch
    from nesf.data.vocab import SpeciesVocab
    from nesf.fields.frame import get_frame
    from nesf.models.config import TrainConfig
    from nesf.training.sampling import QuerySampler
    from small_model import SMALL_TRAIN

    crystals = [c for c in classic if c.n_atoms <= 8][:4]
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals))
    cfg = TrainConfig(**SMALL_TRAIN)
    s = QuerySampler(cfg, get_frame("periodic"), None, shared).sample(batch, torch.Generator().manual_seed(0))
    glob = s.pos_atom < 0
    assert torch.equal(torch.bincount(s.pos_index[glob]), torch.full((4,), cfg.uniform_per_crystal))
    assert torch.equal(torch.bincount(s.pos_index[~glob]), batch.mask.sum(1) * cfg.local_grid**3)
    for points, index, atom in (
        (s.pos_points[~glob], s.pos_index[~glob], s.pos_atom[~glob]),
        (s.spec_points, s.spec_index, s.spec_atom),
    ):
        assert bool(batch.mask[index, atom].all())
        distance = (points - batch.cart[index, atom]).norm(dim=1)
        assert float(distance.max()) < 1.0  # drawn around that atom, not another


def test_latent_adam_updates_exactly_as_torch_adam():
    from nesf.encoding.refine import LatentAdam

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(8, 24, generator=gen).requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    opt, mine = torch.optim.Adam([a], lr=0.1), LatentAdam(b)
    for k in range(20):
        grad = torch.randn(8, 24, generator=gen)
        for group in opt.param_groups:
            group["lr"] = 0.1 * (1 - k / 20)
        a.grad = grad.clone()
        opt.step()
        mine.step(grad, 0.1 * (1 - k / 20))
    assert torch.equal(a, b) and not torch.equal(b, torch.zeros_like(b))


def test_fit_lattice_matches_the_cell_with_a_small_move_of_the_code():
    from nesf.encoding.refine import RefineSettings, fit_lattice
    from small_model import SMALL_MODEL

    torch.manual_seed(0)
    net = NeSFModel(ModelConfig(**SMALL_MODEL), 3)
    z = torch.randn(5, net.cfg.latent_dim)
    with torch.no_grad():
        target = net.lattice_normalized(z) + 0.01 * torch.randn(5, 6)  # cells about a per cent away
    fitted = fit_lattice(net, z, target, iterations=5)
    with torch.no_grad():
        assert (net.lattice_normalized(fitted) - target).abs().max() < 1e-4
    assert (fitted - z).norm(dim=1).max() < 5.0  # a move, not a new code
    assert fit_lattice(net, z, target, iterations=0) is z
    # each crystal's code is fitted on its own: the others in the batch change nothing
    assert torch.allclose(fit_lattice(net, z[:2], target[:2], iterations=5), fitted[:2], atol=1e-5)
    with pytest.raises(ValueError, match="lattice_fit"):
        RefineSettings(lattice_fit=-1)
    # a cell the heads cannot make (far outside what they give) would take a new code: left alone
    far = target.clone()
    far[0, 3:] += 40.0
    refused = fit_lattice(net, z, far, iterations=5)
    assert torch.equal(refused[0], z[0]) and torch.allclose(refused[1:], fitted[1:], atol=1e-5)


def test_a_cell_outside_a_specialist_leaves_its_code_bounded():
    """hcp Mg (60 degree angle) through the cubic perovskite model: the fit must not blow the code up."""
    from nesf.api import NeSF
    from nesf.data.batch import CrystalBatch
    from nesf.data.examples import classic_crystals
    from nesf.encoding.refine import LATTICE_FIT_MAX_MOVE

    model = NeSF.load("perov_5").with_refinement(steps=2, restarts=0)
    mg = next(c for c in classic_crystals() if c.id == "Mg-hcp-conventional")
    inner, _ = model.to_model_setting([mg])
    batch = CrystalBatch.from_crystals(inner, model.vocab)
    z0, _, _ = model.model.encode(batch.cart, batch.frac, batch.species, batch.mask, batch.lattice_params)
    z = model.encode_crystals([mg])
    assert (z - z0).norm() <= (LATTICE_FIT_MAX_MOVE + 0.1) * z0.norm()
