"""Generation of new crystals from a trained autoencoder's latent space.

:mod:`nesf.generation.prior` models the encoded training crystals' latent codes (flow
matching); :meth:`nesf.api.NeSF.sample` draws codes from it and decodes them with the usual
reconstruction; :mod:`nesf.metrics.generation` scores the result with the field's protocol.
"""

from __future__ import annotations

from nesf.generation.prior import LatentPrior, PriorConfig, fit_prior, load_prior, save_prior

__all__ = ["LatentPrior", "PriorConfig", "fit_prior", "load_prior", "save_prior"]
