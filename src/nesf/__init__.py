"""nesf: Neural Structure Fields for crystal structures.

Crystals become continuous fields (the vector to the nearest atom and that atom's species),
a neural network learns those fields from a latent code, and a particle algorithm turns any
field back into atoms.
"""

from __future__ import annotations

__version__ = "0.1.0"

from nesf.data.crystal import Crystal  # noqa: E402
from nesf.data.readers import read_crystals  # noqa: E402
from nesf.data.vocab import SpeciesVocab  # noqa: E402

__all__ = ["Crystal", "SpeciesVocab", "read_crystals", "__version__"]
