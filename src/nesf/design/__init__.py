"""Design with the latent space: property heads on codes, prediction, latent optimisation, conditional sampling.

- :mod:`nesf.design.head`: :class:`PropertyHead` (an MLP ensemble on codes) and its checkpoint;
- :mod:`nesf.design.crystal_head`: :class:`CrystalHead` (an MLP ensemble on site tables, for
  prediction) and :mod:`nesf.design.sites`, the site tables it reads;
- :mod:`nesf.design.workflow`: :func:`fit_property`, :func:`predict`, :func:`optimize`;
- :mod:`nesf.design.optimize`: batched Adam steps on codes with a trust region;
- :mod:`nesf.design.conditional`: prior samples kept near a target;
- :mod:`nesf.design.evaluator`: independent evaluators on composition and structure features;
- :mod:`nesf.design.success`: SR5 / SR10 / SR15;
- :mod:`nesf.design.registry`: the shipped heads (``weights/heads``).
"""

from __future__ import annotations

from nesf.design.conditional import ConditionalSettings, conditional_sample, score_conditional
from nesf.design.crystal_head import CrystalHead, CrystalHeadConfig, fit_crystal_head, save_crystal_head
from nesf.design.evaluator import Evaluator, fit_evaluator, load_evaluator, save_evaluator
from nesf.design.head import HeadConfig, PropertyHead, fit_head, load_head, save_head
from nesf.design.optimize import OptimizeSettings, TrustRegion, optimize_codes
from nesf.design.success import CDVAE_PERCENTILES, success_rates
from nesf.design.workflow import design_codes, fit_property, optimize, predict

__all__ = [
    "CDVAE_PERCENTILES",
    "ConditionalSettings",
    "CrystalHead",
    "CrystalHeadConfig",
    "Evaluator",
    "HeadConfig",
    "OptimizeSettings",
    "PropertyHead",
    "TrustRegion",
    "conditional_sample",
    "design_codes",
    "fit_crystal_head",
    "fit_evaluator",
    "fit_head",
    "fit_property",
    "load_evaluator",
    "load_head",
    "optimize",
    "optimize_codes",
    "predict",
    "save_crystal_head",
    "save_evaluator",
    "save_head",
    "score_conditional",
    "success_rates",
]
