"""The plain extxyz dialect: read and written without ``ase.io``, with exactly ASE's values."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from nesf.data import extxyz as X
from nesf.data.crystal import Crystal
from nesf.data.extxyz_plain import ASE_SPECIAL_KEYS, parse_plain_frames, plain_extxyz_text
from nesf.io.writers import extxyz_text

HEAD = 'Lattice="4.0 0.0 0.0 0.0 4.5 0.0 0.0 0.1 5.0" Properties=species:S:1:pos:R:3'


def _frame(keys: str, rows: str = "Na 0.0 0.0 0.0\nCl 2.0 2.25 2.5\n") -> str:
    return f'{rows.count(chr(10))}\n{HEAD} {keys} pbc="T T T"\n{rows}'


def _read_both(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Crystal], list[Crystal]]:
    """The file read by the plain parser and by ASE (the plain parser switched off)."""
    path = tmp_path / "f.extxyz"
    path.write_text(text)
    plain = X.read_extxyz(path)
    with monkeypatch.context() as m:
        m.setattr(X, "parse_plain_frames", lambda lines: None)
        ase = X.read_extxyz(path)
    return plain, ase


def _same(a: list[Crystal], b: list[Crystal]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.id == y.id
        assert np.array_equal(x.lattice, y.lattice) and np.array_equal(x.cart, y.cart)
        assert np.array_equal(x.numbers, y.numbers)
        assert x.info.keys() == y.info.keys()
        px, py = x.info.get("properties") or {}, y.info.get("properties") or {}
        assert px.keys() == py.keys()
        for key, value in px.items():
            assert type(value) is type(py[key]), key
            assert value == py[key] or (value != value and py[key] != py[key]), key  # NaN is NaN


@pytest.mark.parametrize(
    "keys",
    [
        "material_id=mp-1",
        "material_id=007 formula=NaCl",  # an id that looks like a number stays as written
        "material_id=x count=12 big=-000123 energy_per_atom=-3.25 gap=1e-3 flag=T other=false",
        "material_id=x word=abc.d-e:f/g+h small=.5 huge=123456789012345678",
    ],
)
def test_plain_frames_read_as_ase_reads_them(tmp_path: Path, keys: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _frame(keys)
    assert parse_plain_frames(text.splitlines()) is not None  # the fast path is taken
    plain, ase = _read_both(tmp_path, text + _frame("material_id=b"), monkeypatch)
    _same(plain, ase)


@pytest.mark.parametrize(
    "keys",
    [
        'material_id=x note="two words"',  # quoted values
        "material_id=x energy=-3.0",  # ASE's calculator keys
        "material_id=x v=nan",
        "material_id=x v=1,2",
        "material_id=x v=1_000",
        "material_id=x v=1234567890123456789012",  # beyond 64-bit integers: ASE reads a float
        "material_id=x material_id=y",
    ],
)
def test_other_frames_are_left_to_ase(tmp_path: Path, keys: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _frame(keys)
    assert parse_plain_frames(text.splitlines()) is None
    plain, ase = _read_both(tmp_path, text, monkeypatch)
    _same(plain, ase)


def test_other_columns_and_symbols_are_left_to_ase() -> None:
    cols = _frame("material_id=x").replace("pos:R:3", "pos:R:3:forces:R:3")
    assert parse_plain_frames(cols.splitlines()) is None
    assert parse_plain_frames(_frame("material_id=x", "X 0 0 0\n").splitlines()) is None
    assert parse_plain_frames(_frame("material_id=x").replace('"T T T"', '"T T F"').splitlines()) is None
    assert parse_plain_frames(_frame("material_id=x stress=1").splitlines()) is None  # ASE wants nine numbers


def test_blank_lines_between_frames_keep_every_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ASE alone stops at the first blank line; both paths now read every frame."""
    text = _frame("material_id=a") + "\n\n" + _frame("material_id=b")
    plain, ase = _read_both(tmp_path, text, monkeypatch)
    assert [c.id for c in plain] == ["a", "b"]
    _same(plain, ase)


def test_a_zero_cell_vector_is_refused_as_ase_frames_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nesf.errors import CrystalInputError

    path = tmp_path / "flat.extxyz"
    path.write_text(_frame("material_id=x").replace("0.0 0.1 5.0", "0.0 0.0 0.0"))
    messages = []
    for plain in (True, False):
        with monkeypatch.context() as m:
            if not plain:
                m.setattr(X, "parse_plain_frames", lambda lines: None)
            with pytest.raises(CrystalInputError) as err:
                X.read_extxyz(path)
            messages.append(str(err.value))
    assert "no 3D periodic cell" in messages[0]
    assert messages[0] == messages[1]


def test_special_keys_cover_ase_calculator_properties() -> None:
    from ase.calculators.calculator import all_properties

    assert {p.lower() for p in all_properties} <= ASE_SPECIAL_KEYS


def test_writer_gives_ase_text_and_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ase.io

    rng = np.random.default_rng(0)
    crystals = []
    for i in range(5):
        lattice = np.diag(rng.uniform(3, 6, 3)) + rng.normal(0, 0.1, (3, 3))
        c = Crystal(lattice, rng.uniform(0, 3, (3, 3)), np.array([8, 12, 26]), id=f"c-{i}")
        c.info["properties"] = {"e_form": float(rng.normal()), "n": i, "ok": bool(i % 2), "tag": "abc"}
        crystals.append(c)
    text = extxyz_text(crystals)
    buffer = io.StringIO()
    ase.io.write(buffer, [c.to_ase() for c in crystals], format="extxyz")
    assert text == buffer.getvalue()
    path = tmp_path / "w.extxyz"
    path.write_text(text)
    back = X.read_extxyz(path)
    assert [c.info["properties"] for c in back] == [c.info["properties"] for c in crystals]
    assert all(np.abs(a.cart - b.cart).max() < 1e-8 for a, b in zip(back, crystals))


def test_writer_falls_back_to_ase_for_values_without_a_plain_spelling() -> None:
    c = Crystal(np.eye(3) * 4.0, np.zeros((1, 3)), np.array([29]), id="Cu 1")
    c.info["properties"] = {"note": "two words"}
    frame = (c.lattice, c.cart, c.numbers, {"material_id": c.id, "note": "two words"})
    assert plain_extxyz_text([frame]) is None
    assert plain_extxyz_text([(c.lattice, c.cart, c.numbers, {"energy": 1.0})]) is None
    assert plain_extxyz_text([(c.lattice, c.cart, c.numbers, {"v": float("nan")})]) is None
    text = extxyz_text([c])  # by ASE
    assert 'material_id="Cu 1"' in text and 'note="two words"' in text
