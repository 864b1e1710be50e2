"""CIF files: every block read strictly (:mod:`nesf.data.cif_check`), then by pymatgen, then compared."""

from __future__ import annotations

import warnings
from pathlib import Path

from nesf.data.crystal import Crystal
from nesf.data.textfile import check_complete, check_size, short_message
from nesf.errors import CrystalInputError


def read_cif(path: str | Path) -> list[Crystal]:
    """Read every data block of a CIF file; ids are ``<stem>`` or ``<stem>-<block>``."""
    from nesf.data.cif_check import MAX_CIF_CHARS

    path = Path(path)
    check_size(path, MAX_CIF_CHARS)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not text (is it really a CIF?)") from None
    return crystals_from_cif_text(text, source=str(path), stem=path.stem, whole_file=True)


#: pymatgen warnings that mean the structure it returns is not the one in the file.
_DATA_CHANGING_WARNINGS = {
    "Defaulting to P1": "the space group is not recognised and the file lists no symmetry operations "
    "(it would be read as P1, losing the symmetry-equivalent atoms)",
    "exceeded tolerance": "occupancies above 1",
    "rescaled": "occupancies were rescaled",
}


def crystals_from_cif_text(
    text: str, source: str, stem: str, location: str | None = None, whole_file: bool = False
) -> list[Crystal]:
    """Every block of a CIF text as a validated crystal, each exactly as the file describes it.

    The text is read strictly first (:mod:`nesf.data.cif_check`), then each block on its own by
    pymatgen, and pymatgen's atoms are compared with what the block's sites and symmetry give.
    """
    from nesf.data.cif_check import block_texts, check_block, check_text_limits, parse_blocks

    text = text.lstrip("\ufeff")  # a UTF-8 byte-order mark would hide the first block
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line endings
    if not text.strip():
        raise CrystalInputError(source, "the CIF is empty", location)
    check_text_limits(text, source, location)
    if whole_file:
        check_complete(text, source)
    blocks = parse_blocks(text, source, location)
    names = [b.name.lower() for b in blocks]
    for k, name in enumerate(names):
        if name in names[:k]:
            raise CrystalInputError(
                source, f"two data blocks are named 'data_{blocks[k].name}' (one would hide the other)", location
            )
    crystals = []
    for block, block_text in zip(blocks, block_texts(text, blocks)):
        where = location or (f"block '{block.name}'" if len(blocks) > 1 else None)
        expected = check_block(block, source, where)
        structure = _pymatgen_block(block_text, source, where)
        if not structure.is_ordered:
            raise CrystalInputError(
                source, "partial occupancies are not supported (the structure is disordered)", where
            )
        _compare_with_file(structure, expected, source, where)
        cid = stem if len(blocks) == 1 else f"{stem}-{len(crystals)}"
        crystals.append(Crystal.from_pymatgen(structure, id=cid).validate(source, where))
    return crystals


def _pymatgen_block(text: str, source: str, where: str | None):  # noqa: ANN202
    """One block's structure by pymatgen; its warnings that mean a changed crystal are refusals."""
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parser = CifParser.from_str(text, occupancy_tolerance=1.0, check_cif=False)
            structures = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError... on bad CIFs
        if "thickness" in str(exc) or "Singular matrix" in str(exc):  # flat or zero-length cell
            raise CrystalInputError(
                source, "the lattice has zero volume: its vectors are not independent (flat cell)", where
            ) from None
        raise CrystalInputError(source, f"could not parse CIF: {short_message(exc)}", where) from None
    for w in caught:
        message = str(w.message)
        for marker, meaning in _DATA_CHANGING_WARNINGS.items():
            if marker in message:
                raise CrystalInputError(source, f"{meaning} (pymatgen: {short_message(Exception(message))})", where)
    if len(structures) != 1:
        raise CrystalInputError(source, "the block holds no structure (no atom sites?)", where)
    return structures[0]


def _compare_with_file(structure, expected, source: str, where: str | None) -> None:  # noqa: ANN001
    """Refuse a structure whose atoms are not those the block's sites and symmetry give."""
    if expected.n_atoms is None or expected.composition is None:
        return
    got = {str(el): int(round(n)) for el, n in structure.composition.remove_charges().get_el_amt_dict().items()}
    if len(structure) != expected.n_atoms or got != dict(expected.composition):
        raise CrystalInputError(
            source,
            f"the file's sites and symmetry give {expected.n_atoms} atoms ({_formula(expected.composition)}) but "
            f"{len(structure)} ({_formula(got)}) were read; refused rather than read changed",
            where,
        )


def _formula(composition: dict) -> str:
    return " ".join(f"{el}{n}" for el, n in sorted(composition.items()))


__all__ = ["crystals_from_cif_text", "read_cif"]
