"""Fixtures shared by the encoding tests."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from nesf.api import NeSF
from nesf.data.batch import CrystalBatch
from nesf.encoding.checked import CheckedEncoder
from nesf.encoding.refine import RefineSettings


@pytest.fixture(scope="module")
def mp_codes(classic):
    """The shipped `mp`, three classic crystals in its setting, their batch and one-pass codes."""
    model = NeSF.load("mp")
    ids = ("ZnO-wurtzite-conventional", "NiAs-conventional", "CaCO3-calcite-primitive")
    inner, _ = model.to_model_setting([c for c in classic if c.id in ids])
    batch = CrystalBatch.from_crystals(inner, model.vocab)
    with torch.no_grad():
        z, _, _ = model.model.encode(batch.cart, batch.frac, batch.species, batch.mask, batch.lattice_params)
    return model, inner, batch, z


def encode_checked(model: NeSF, refinement: RefineSettings, crystals, finish=None):
    """Checked codes of crystals in ``model``'s setting with ``refinement``, decodes finished by ``finish``.

    Returns :meth:`~nesf.encoding.checked.CheckedEncoder.encode`'s codes, raw decodes and counts.
    """
    s = model.settings
    decode = partial(model.decode_crystals, exact_cells=True, finish=False)
    shells = (s.polish_radii, 0.5 * s.nms_radius)
    encoder = CheckedEncoder(
        model.model, model.vocab, model.train_cfg, refinement, decode, model.bbox, model.device, shells, finish
    )
    return encoder.encode(crystals)


@pytest.fixture(scope="session")
def checked_encode():
    """:func:`encode_checked`, for the tests of the checks that follow the fits."""
    return encode_checked
