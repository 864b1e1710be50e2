"""Tiny models, heads and priors for the design tests (one torch thread; a few seconds in all)."""

from __future__ import annotations

import csv

import pytest
import torch
from design_helpers import NAMES, volume_per_atom  # noqa: F401  (helpers shared with the tests)

from nesf.data.examples import demo_crystals


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def design_setup(tmp_path_factory):
    """A tiny trained model, its training crystals as a CSV carrying ``vpa``, and a tiny prior."""
    from pymatgen.io.cif import CifWriter

    from nesf.api import NeSF
    from nesf.generation.prior import PriorConfig, fit_prior, save_prior
    from nesf.training.loop import Trainer
    from small_model import small_configs

    root = tmp_path_factory.mktemp("design")
    crystals = demo_crystals(NAMES)
    m, t = small_configs()
    Trainer(crystals, crystals, root / "run", m, t, seed=0, progress=False).run(epochs=1)
    model_path = root / "run" / "last.pt"
    data = root / "train.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "cif", "vpa"])
        for c in crystals:
            w.writerow([c.id, str(CifWriter(c.to_pymatgen())), volume_per_atom(c)])
    model = NeSF.load(model_path)
    z = model.with_refinement(steps=0).encode_crystals(model.prepare(crystals))
    prior, _ = fit_prior(z, PriorConfig(latent_dim=z.shape[1], hidden=32, layers=2, epochs=3, steps=4), progress=False)
    prior_path = root / "prior.pt"
    save_prior(prior_path, prior, model.vocab.to_dict(), {"model_sha256": model.info["sha256"]}, 0)
    return {"model": model_path, "data": data, "prior": prior_path, "crystals": crystals, "root": root}


@pytest.fixture(scope="package")
def tiny_head(design_setup):
    """A 2-member head of ``vpa`` on the tiny model's codes."""
    from nesf.api import NeSF
    from nesf.design import HeadConfig, fit_property

    model = NeSF.load(design_setup["model"])
    cfg = HeadConfig(latent_dim=model.latent_dim, members=2, hidden=16, epochs=5, batch_size=4)
    head = fit_property(model, design_setup["data"], "vpa", val=design_setup["data"], cfg=cfg)
    return model, head
