"""nesf: Neural Structure Fields for crystal structures.

Crystals become continuous fields (the vector to the nearest atom and that atom's species),
a neural network learns those fields from a latent code, and a particle algorithm turns any
field back into atoms.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

#: The shipped model used when none is named: the general one, trained on Materials Project crystals.
DEFAULT_MODEL = "mp"

# spglib's C library prints a line to stderr whenever a symmetry search at some tolerance fails
# ("ssm_get_exact_positions failed"); nesf handles those failures itself, so keep the output
# readable unless the user asks for them (SPGLIB_WARNING=ON).
os.environ.setdefault("SPGLIB_WARNING", "OFF")

from nesf.data.crystal import Crystal  # noqa: E402
from nesf.data.readers import read_crystals  # noqa: E402
from nesf.data.vocab import SpeciesVocab  # noqa: E402

__all__ = ["DEFAULT_MODEL", "Crystal", "NeSF", "SpeciesVocab", "read_crystals", "__version__"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: importing nesf does not import torch
    if name == "NeSF":
        from nesf.api import NeSF

        return NeSF
    raise AttributeError(f"module 'nesf' has no attribute {name!r}")
