"""SpeciesVocab: construction, encoding, serialisation, unknown elements."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nesf import Crystal, SpeciesVocab
from nesf.errors import NesfError, UnknownElementError


def _crystals() -> list[Crystal]:
    lat = np.eye(3) * 4.0
    return [
        Crystal(lat, [[0, 0, 0], [2, 2, 2]], [11, 17], id="NaCl"),
        Crystal(lat, [[0, 0, 0], [1, 1, 1], [2, 2, 2]], [8, 26, 8], id="FeO2"),
    ]


def test_from_crystals_sorted_unique():
    vocab = SpeciesVocab.from_crystals(_crystals())
    assert vocab.numbers == (8, 11, 17, 26)
    assert len(vocab) == 4
    assert vocab.symbols == ["O", "Na", "Cl", "Fe"]


def test_constructor_sorts_and_deduplicates():
    assert SpeciesVocab((26, 8, 8, 1)).numbers == (1, 8, 26)
    with pytest.raises(ValueError):
        SpeciesVocab(())
    with pytest.raises(ValueError):
        SpeciesVocab((0, 8))
    with pytest.raises(ValueError):
        SpeciesVocab((8, 119))


def test_encode_decode():
    vocab = SpeciesVocab((8, 11, 17, 26))
    idx = vocab.encode([26, 8, 17, 11, 8])
    np.testing.assert_array_equal(idx, [3, 0, 2, 1, 0])
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(vocab.decode(idx), [26, 8, 17, 11, 8])
    np.testing.assert_array_equal(vocab.decode(np.arange(len(vocab))), vocab.numbers)
    assert vocab.encode([]).shape == (0,)


def test_dict_round_trip():
    vocab = SpeciesVocab((1, 8, 92))
    d = vocab.to_dict()
    assert d == {"numbers": [1, 8, 92]}
    assert SpeciesVocab.from_dict(json.loads(json.dumps(d))) == vocab
    assert SpeciesVocab.from_dict({"numbers": [np.int64(8), 1]}) == SpeciesVocab((1, 8))


def test_unknown_element_names_symbol_and_crystal():
    vocab = SpeciesVocab.from_crystals(_crystals())
    with pytest.raises(UnknownElementError) as info:
        vocab.encode([8, 92, 26], crystal_id="mp-1234")
    err = info.value
    msg = str(err)
    assert err.symbol == "U"
    assert "element U " in msg
    assert "'mp-1234'" in msg
    assert "O, Na, Cl, Fe" in msg  # the known elements are listed
    assert not msg.startswith('"')  # not quoted like a plain KeyError
    assert isinstance(err, NesfError) and isinstance(err, KeyError)


def test_unknown_element_without_crystal_id_and_bad_numbers():
    vocab = SpeciesVocab((8,))
    with pytest.raises(UnknownElementError) as info:
        vocab.encode([1])
    assert str(info.value).startswith("element H is not in the species vocabulary")
    for z in (0, 119, -3):
        with pytest.raises(UnknownElementError, match=f"Z={z}"):
            vocab.encode([8, z])


def test_long_vocab_message_is_truncated():
    vocab = SpeciesVocab(tuple(range(1, 60)))
    with pytest.raises(UnknownElementError) as info:
        vocab.encode([92])
    assert "59 elements" in str(info.value)
    assert str(info.value).endswith(", ...)")
