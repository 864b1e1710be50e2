"""Strict reading of CIF text before pymatgen builds structures from it.

pymatgen is lenient: a malformed symmetry operation is applied as if valid, a site whose type
symbol is no element is dropped, ``1_000`` or ``.`` is read as a number, a stray line inside a
loop shifts the rows after it. Each of these changes the crystal without a word. This module
reads the CIF's syntax itself (blocks, loops, tags, values; CIF 1.1), checks every value that
decides the crystal (cell, sites, occupancies, symmetry operations) against CIF's grammar, and
says how many atoms of which elements the block describes, so that what pymatgen returns can be
compared with what the file says. Anything that is not exactly readable is refused with a
:class:`~nesf.errors.CrystalInputError` naming the file, the block and the line.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from nesf.data.symops import check_group, parse_symop, same_operations
from nesf.errors import CrystalInputError

#: Longest line accepted in a CIF (characters); CIF 1.1 allows 2048, real files stay far below.
MAX_CIF_LINE = 4096
#: Largest CIF text accepted (characters): far above any crystal within the atom limit.
MAX_CIF_CHARS = 50_000_000
#: Largest fractional coordinate accepted (in cells); beyond it a position is a typo, not a crystal.
MAX_FRACTION = 1000.0
#: Fractional distance under which two images of a site are one atom (pymatgen merges alike).
SITE_MERGE_TOLERANCE = 1e-3

#: CIF keys of symmetry operations (old and new dictionaries).
SYMOP_KEYS = (
    "_symmetry_equiv_pos_as_xyz",
    "_space_group_symop_operation_xyz",
    "_space_group_symop.operation_xyz",
)
#: CIF keys of the space group's Hermann-Mauguin symbol.
SYMBOL_KEYS = ("_symmetry_space_group_name_h-m", "_space_group_name_h-m_alt", "_space_group.name_h-m_alt")

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:\(\d+\))?")
_TOKEN = re.compile(r"""\s*(?:(#.*)|'(.*?)'(?=\s|$)|"(.*?)"(?=\s|$)|(\S+))""")
_ELEMENT_SYMBOL = re.compile(r"([A-Z][a-z]?)(?:\d*(?:\.\d+)?[+-]|[+-]\d*)?")


def quote(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters (a 100k-digit number stays short)."""
    text = str(text)
    if len(text) > limit:
        return repr(text[: limit - 3] + "...") + f" ({len(text)} characters)"
    return repr(text)


@dataclass
class Value:
    """One CIF value: its text, whether it was quoted, and its line (1-based)."""

    text: str
    quoted: bool
    line: int

    @property
    def unknown(self) -> bool:
        """CIF's unknown (``?``) or inapplicable (``.``) value, unquoted."""
        return not self.quoted and self.text in ("?", ".")


@dataclass
class Block:
    """One ``data_`` block: its name, the line it starts on, and its tags (lower case) with their values."""

    name: str
    line: int
    tags: dict[str, list[Value]] = field(default_factory=dict)
    tag_lines: dict[str, int] = field(default_factory=dict)

    def get(self, tag: str) -> list[Value] | None:
        """The values of ``tag`` (lower case), or None."""
        return self.tags.get(tag)

    def first(self, *tags: str) -> Value | None:
        """The single value of the first of ``tags`` present, or None."""
        for tag in tags:
            values = self.tags.get(tag)
            if values:
                return values[0]
        return None


@dataclass
class Expected:
    """What a block describes once its symmetry is applied: atom count and composition (element -> count)."""

    n_atoms: int | None
    composition: Counter | None


def check_text_limits(text: str, source: str, location: str | None = None) -> None:
    """Refuse CIF text too large or with absurdly long lines, before any parsing."""
    if len(text) > MAX_CIF_CHARS:
        raise CrystalInputError(
            source, f"the CIF holds {len(text):,} characters, more than the limit of {MAX_CIF_CHARS:,}", location
        )
    longest = max((len(line) for line in text.split("\n")), default=0)
    if longest > MAX_CIF_LINE:
        number = next(i for i, line in enumerate(text.split("\n"), 1) if len(line) == longest)
        raise CrystalInputError(
            source,
            f"line {number} is {longest:,} characters long (a CIF line may hold at most {MAX_CIF_LINE})",
            location,
        )


# ------------------------------------------------------------------ syntax
def _SyntaxError(source: str, reason: str, location: str | None = None) -> CrystalInputError:  # noqa: N802
    """A refusal of the CIF's syntax (the message says it could not be parsed, and where)."""
    return CrystalInputError(source, f"could not parse CIF: {reason}", location)


def _tokens(text: str, source: str, location: str | None) -> list[tuple[str, Value]]:
    """CIF tokens ``(kind, value)``; kinds: data, loop, tag, value, reserved."""
    out: list[tuple[str, Value]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(";"):  # a text field runs to the next line that starts with ';'
            start = i
            body = [line[1:]]
            i += 1
            while i < len(lines) and not lines[i].startswith(";"):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise _SyntaxError(source, f"line {start + 1}: a text field (;) is never closed", location)
            out.append(("value", Value("\n".join(body), True, start + 1)))
            line = lines[i][1:]
        if "\x00" in line:
            raise _SyntaxError(source, f"line {i + 1}: a NUL byte", location)
        for m in _TOKEN.finditer(line):
            if m.group(1) is not None:
                break
            if m.group(2) is not None or m.group(3) is not None:
                text_ = m.group(2) if m.group(2) is not None else m.group(3)
                out.append(("value", Value(text_, True, i + 1)))
                continue
            word = m.group(4)
            if word is None:
                continue
            if word[0] in "'\"":
                raise _SyntaxError(source, f"line {i + 1}: a quote is never closed ({quote(word)})", location)
            low = word.lower()
            if low.startswith("data_"):
                out.append(("data", Value(word[5:], False, i + 1)))
            elif low == "loop_":
                out.append(("loop", Value(word, False, i + 1)))
            elif low.startswith(("save_", "global_", "stop_")):
                out.append(("reserved", Value(word, False, i + 1)))
            elif word.startswith("_"):
                out.append(("tag", Value(low, False, i + 1)))
            else:
                out.append(("value", Value(word, False, i + 1)))
        i += 1
    return out


def parse_blocks(text: str, source: str, location: str | None = None) -> list[Block]:
    """Read a CIF's blocks strictly: every tag has its value, every loop whole rows, no value without a tag.

    Raises:
        CrystalInputError: naming the line, for a value that belongs to no tag (a stray or moved
            line), a loop whose header is missing, repeated or does not fit its rows, a tag that
            appears twice in a block, a tag without value, or content before the first block.
    """
    tokens = _tokens(text, source, location)
    blocks: list[Block] = []
    block: Block | None = None
    i, n = 0, len(tokens)
    while i < n:
        kind, tok = tokens[i]
        if kind == "data":
            block = Block(tok.text, tok.line)
            blocks.append(block)
            i += 1
            continue
        where = location or (f"block '{block.name}'" if block is not None and len(blocks) > 1 else None)
        if block is None:
            raise _SyntaxError(source, f"line {tok.line}: {quote(tok.text)} comes before any data_ block", where)
        if kind == "reserved":
            raise _SyntaxError(source, f"line {tok.line}: {quote(tok.text)} (save frames) is not supported", where)
        if kind == "value":
            raise _SyntaxError(
                source,
                f"line {tok.line}: the value {quote(tok.text)} belongs to no tag (a stray or moved line?)",
                where,
            )
        if kind == "tag":
            if i + 1 >= n or tokens[i + 1][0] != "value":
                raise _SyntaxError(source, f"line {tok.line}: {tok.text} has no value", where)
            _add(block, tok.text, [tokens[i + 1][1]], tok.line, source, where)
            i += 2
            continue
        # loop_
        i += 1
        tags: list[Value] = []
        while i < n and tokens[i][0] == "tag":
            tags.append(tokens[i][1])
            i += 1
        if not tags:
            shown = quote(tokens[i][1].text) if i < n else "the end of the file"
            raise _SyntaxError(
                source, f"line {tok.line}: loop_ names no columns (found {shown} where a _tag belongs)", where
            )
        names = [t.text for t in tags]
        repeated = sorted({t for t in names if names.count(t) > 1})
        if repeated:
            raise _SyntaxError(source, f"line {tok.line}: the loop names {repeated[0]} twice", where)
        values: list[Value] = []
        while i < n and tokens[i][0] == "value":
            values.append(tokens[i][1])
            i += 1
        if not values:
            raise _SyntaxError(source, f"line {tok.line}: the loop of {names[0]} has no rows", where)
        if len(values) % len(tags):
            raise _SyntaxError(
                source,
                f"line {tok.line}: the loop of {names[0]}, ... has {len(values)} values, not a whole number of rows "
                f"of {len(tags)} (a line missing, added or broken?)",
                where,
            )
        for j, tag in enumerate(tags):
            _add(block, tag.text, values[j :: len(tags)], tag.line, source, where)
    if not blocks:
        raise _SyntaxError(source, "no data_ block (is it really a CIF?)", location)
    return blocks


def _add(block: Block, tag: str, values: list[Value], line: int, source: str, where: str | None) -> None:
    if tag in block.tags:
        raise _SyntaxError(
            source, f"line {line}: {tag} appears twice in the block (first on line {block.tag_lines[tag]})", where
        )
    block.tags[tag] = values
    block.tag_lines[tag] = line


def block_texts(text: str, blocks: list[Block]) -> list[str]:
    """Each block's own text (from its ``data_`` line to the next block's)."""
    lines = text.split("\n")
    starts = [b.line - 1 for b in blocks] + [len(lines)]
    return ["\n".join(lines[starts[k] : starts[k + 1]]) + "\n" for k in range(len(blocks))]


# ------------------------------------------------------------------ values
def number(value: Value, label: str, source: str, where: str | None) -> float:
    """A CIF number (``5.64(2)`` -> 5.64) by CIF's grammar; refused if it is anything else.

    Python's ``float`` would also take ``1_000``, ``inf``, ``nan`` and ``infinity``; CIF does not.
    """
    if value.unknown:
        raise CrystalInputError(source, f"line {value.line}: {label} is unknown ({value.text!r})", where)
    text = value.text.strip()
    if value.quoted or not _NUMBER.fullmatch(text):
        raise CrystalInputError(source, f"line {value.line}: {label} = {quote(text)} is not a number", where)
    x = float(text.split("(")[0])
    if not np.isfinite(x):
        raise CrystalInputError(source, f"line {value.line}: {label} = {quote(text)} is out of range", where)
    return x


def element_of(value: Value, is_label: bool) -> str | None:
    """The element a site's type symbol (``Fe``, ``Fe3+``, ``O2-``) or label (``Fe1``) names, or None."""
    from pymatgen.core.periodic_table import Element

    text = value.text.strip()
    if value.unknown or not text:
        return None
    m = re.match(r"[A-Z][a-z]?", text) if is_label else _ELEMENT_SYMBOL.fullmatch(text)
    if m is None:
        return None
    symbol = m.group(0) if is_label else m.group(1)
    for candidate in (symbol, symbol[:1]) if is_label else (symbol,):
        if Element.is_valid_symbol(candidate) and Element(candidate).Z <= 118:
            return candidate
    return None


# ------------------------------------------------------------------ the block's crystal
def check_block(block: Block, source: str, where: str | None) -> Expected:
    """Check every value that decides a block's crystal; return the atoms it describes.

    Raises:
        CrystalInputError: a cell parameter, coordinate or occupancy that is not a number by CIF's
            grammar (or unknown, or absurd), a site whose type symbol names no element, a malformed
            symmetry operation or a list of them that is no group, an expansion beyond the atom limit,
            or sites that disagree with the block's stated formula.
    """
    from nesf.data.crystal import LIMITS

    _check_cell(block, source, where)
    symmetry_keys = (*SYMOP_KEYS, *SYMBOL_KEYS, "_symmetry_int_tables_number", "_space_group_it_number")
    if not any(block.get(key) for key in symmetry_keys):
        raise CrystalInputError(
            source,
            "the block names no space group and lists no symmetry operations, so its symmetry is unknown "
            "(for P1, add _symmetry_equiv_pos_as_xyz 'x, y, z')",
            where,
        )
    sites, elements = _sites(block, source, where)
    ops = _operations(block, source, where)
    if sites is None:
        return Expected(None, None)
    if ops is None:
        return Expected(None, None)
    rot, trans = ops
    if len(sites) * len(rot) > LIMITS.max_atoms:
        n_bound = _orbit_sizes(sites, rot, trans, LIMITS.max_atoms)
        if n_bound is None:
            raise CrystalInputError(
                source,
                f"the symmetry expansion gives more atoms than the limit of {LIMITS.max_atoms} (--max-atoms)",
                where,
            )
        sizes = n_bound
    else:
        sizes = _orbit_sizes(sites, rot, trans, None)
    composition: Counter = Counter()
    for el, size in zip(elements, sizes):
        composition[el] += int(size)
    n_atoms = int(sum(sizes))
    _check_formula(block, composition, n_atoms, source, where)
    return Expected(n_atoms, composition)


def _check_cell(block: Block, source: str, where: str | None) -> None:
    from nesf.data.crystal import LIMITS, angles_form_cell

    for axis in "abc":
        value = block.first(f"_cell_length_{axis}")
        if value is None:
            continue
        x = number(value, f"cell length {axis}", source, where)
        if x <= 0:
            flat = " (a cell of zero volume)" if x == 0 else ""
            raise CrystalInputError(source, f"cell length {axis} = {value.text} is not a positive length{flat}", where)
        if x > LIMITS.max_cell_length:
            raise CrystalInputError(
                source,
                f"cell length {axis} = {quote(value.text)} A exceeds the limit of {LIMITS.max_cell_length:g} A",
                where,
            )
    angles = []
    for name in ("alpha", "beta", "gamma"):
        value = block.first(f"_cell_angle_{name}")
        if value is None:
            continue
        x = number(value, f"cell angle {name}", source, where)
        if not 0.0 < x < 180.0:
            flat = " (a flat cell of zero volume)" if x in (0.0, 180.0) else ""
            raise CrystalInputError(
                source, f"cell angle {name} = {quote(value.text)} lies outside (0, 180) degrees{flat}", where
            )
        angles.append(x)
    if len(angles) == 3 and not angles_form_cell(np.radians(np.array(angles))):
        shown = ", ".join(f"{a:g}" for a in angles)
        raise CrystalInputError(source, f"cell angles {shown} degrees form no real cell", where)


def _sites(block: Block, source: str, where: str | None) -> tuple[np.ndarray | None, list[str]]:
    """Fractional coordinates ``[S, 3]`` and elements of the block's sites (None if it lists no fractional sites)."""
    columns = [block.get(f"_atom_site_fract_{a}") for a in "xyz"]
    symbols = block.get("_atom_site_type_symbol")
    labels = block.get("_atom_site_label")
    occupancies = block.get("_atom_site_occupancy")
    if any(c is None for c in columns):
        if block.get("_atom_site_cartn_x") is not None:
            raise CrystalInputError(source, "atom sites are given only in Cartesian coordinates (not read)", where)
        return None, []
    n = len(columns[0])
    for other in (*columns[1:], symbols, labels, occupancies):
        if other is not None and len(other) != n:
            raise CrystalInputError(
                source, f"the atom-site columns differ in length ({len(other)} and {n} rows)", where
            )
    frac = np.empty((n, 3))
    for k, column in enumerate(columns):
        for s, value in enumerate(column):
            x = number(value, f"fractional coordinate {'xyz'[k]} of site {s + 1}", source, where)
            if abs(x) > MAX_FRACTION:
                raise CrystalInputError(
                    source,
                    f"line {value.line}: fractional coordinate {'xyz'[k]} of site {s + 1} = {quote(value.text)} "
                    f"lies more than {MAX_FRACTION:g} cells away",
                    where,
                )
            frac[s, k] = x
    names = symbols if symbols is not None else labels
    elements: list[str] = []
    for s in range(n):
        if names is None:
            raise CrystalInputError(source, "the atom sites have neither type symbols nor labels", where)
        element = element_of(names[s], is_label=symbols is None)
        if element is None:
            what = "type symbol" if symbols is not None else "label"
            raise CrystalInputError(
                source, f"line {names[s].line}: site {s + 1}'s {what} {quote(names[s].text)} names no element", where
            )
        elements.append(element)
    if occupancies is not None:
        for s, value in enumerate(occupancies):
            if value.unknown:
                continue  # CIF's convention: full occupancy
            x = number(value, f"occupancy of site {s + 1}", source, where)
            if not 0.0 < x <= 1.0 + 1e-3:
                raise CrystalInputError(source, f"occupancy {value.text} lies outside (0, 1]", where)
            if x < 1.0 - 1e-3:
                raise CrystalInputError(
                    source,
                    f"partial occupancies are not supported (site {s + 1} has occupancy {value.text}: disordered)",
                    where,
                )
    return frac, elements


def _operations(block: Block, source: str, where: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The block's symmetry operations (rotations ``[O, 3, 3]``, translations ``[O, 3]``); None if unknown."""
    lists = []
    for key in SYMOP_KEYS:
        values = block.get(key)
        if values is None:
            continue
        rots, trans = [], []
        for value in values:
            if value.unknown or not value.text.strip():
                raise CrystalInputError(source, f"line {value.line}: an empty symmetry operation", where)
            try:
                r, t = parse_symop(value.text)
            except ValueError as exc:
                raise CrystalInputError(
                    source, f"line {value.line}: symmetry operation {quote(value.text)} is malformed: {exc}", where
                ) from None
            rots.append(r)
            trans.append(t)
        lists.append((key, np.stack(rots), np.stack(trans)))
    if lists:
        key, rot, trans = lists[0]
        for other_key, other_rot, other_trans in lists[1:]:
            if not same_operations(rot, trans, other_rot, other_trans):
                raise CrystalInputError(source, f"{key} and {other_key} list different symmetry operations", where)
        bad = check_group(rot, trans)
        if bad is not None:
            i, j = bad
            line = block.get(key)
            raise CrystalInputError(
                source,
                f"the symmetry operations do not form a group: the product of {quote(line[i].text)} (line "
                f"{line[i].line}) and {quote(line[j].text)} (line {line[j].line}) is not listed",
                where,
            )
        return rot, trans
    return _operations_of_symbol(block)


def _operations_of_symbol(block: Block) -> tuple[np.ndarray, np.ndarray] | None:
    """Operations of the block's space-group symbol (pymatgen), or None when it names none or an unknown one."""
    from pymatgen.symmetry.groups import SpaceGroup

    value = block.first(*SYMBOL_KEYS)
    if value is None or value.unknown or not value.text.strip():
        return None
    try:
        ops = list(SpaceGroup(value.text.replace(" ", "").strip("'\"")).symmetry_ops)
    except Exception:  # an unknown symbol: pymatgen's own fallback to P1 is refused by the reader
        return None
    return np.stack([op.rotation_matrix for op in ops]), np.stack([op.translation_vector for op in ops])


def _orbit_sizes(sites: np.ndarray, rot: np.ndarray, trans: np.ndarray, limit: int | None) -> list[int] | None:
    """Distinct images of each site under the operations; None as soon as the total passes ``limit``."""
    images = np.einsum("oij,sj->soi", rot, sites) + trans[None]  # [S, O, 3]
    images -= np.floor(images)
    sizes: list[int] = []
    total = 0
    for img in images:
        diff = img[:, None, :] - img[None, :, :]
        diff -= np.rint(diff)
        close = np.all(np.abs(diff) < SITE_MERGE_TOLERANCE, axis=-1)  # [O, O]
        first = np.argmax(close, axis=1)  # each image's first equal image
        size = int(np.sum(first == np.arange(len(img))))
        sizes.append(size)
        total += size
        if limit is not None and total > limit:
            return None
    return sizes


def _check_formula(block: Block, composition: Counter, n_atoms: int, source: str, where: str | None) -> None:
    """Sites that contradict the block's ``_chemical_formula_sum`` (and ``_cell_formula_units_Z``) are refused.

    A file cut between lines, or a row lost, still parses; its stated formula is what gives it away.
    """
    from pymatgen.core import Composition

    value = block.first("_chemical_formula_sum")
    if value is None or value.unknown:
        return
    try:
        stated = Composition(value.text).remove_charges().get_el_amt_dict()
    except Exception:  # a formula pymatgen cannot read states nothing we can compare
        return
    if not stated or set(stated) != set(composition):
        raise CrystalInputError(
            source,
            f"the sites hold {_formula(composition)} but _chemical_formula_sum says {quote(value.text)}",
            where,
        )
    ratios = [composition[el] / stated[el] for el in stated]
    if max(ratios) - min(ratios) > 1e-3 * max(ratios):
        raise CrystalInputError(
            source,
            f"the sites hold {_formula(composition)} but _chemical_formula_sum says {quote(value.text)}",
            where,
        )
    z_value = block.first("_cell_formula_units_z")
    if z_value is None or z_value.unknown:
        return
    try:
        z = number(z_value, "_cell_formula_units_Z", source, where)
    except CrystalInputError:
        return
    expected = z * sum(stated.values())
    # CIF states the formula of one formula unit; some writers (pymatgen) state the whole cell's
    if min(abs(expected - n_atoms), abs(sum(stated.values()) - n_atoms)) > 1e-6 * max(1.0, expected):
        raise CrystalInputError(
            source,
            f"the sites give {n_atoms} atoms but _chemical_formula_sum {quote(value.text)} with Z = {z_value.text} "
            f"gives {expected:g} (a line lost or added?)",
            where,
        )


def _formula(composition: Counter) -> str:
    return " ".join(f"{el}{int(k)}" for el, k in sorted(composition.items()))


__all__ = [
    "Block",
    "Expected",
    "check_block",
    "check_text_limits",
    "parse_blocks",
    "quote",
]
