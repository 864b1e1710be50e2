"""Samples with a chosen number of elements: codes drawn until a decode holds the target count.

A prior models the latent codes, not the crystals decoded from them, and a decoder reading a
code from the edge of the codes' distribution tends to give it an extra element or two on
single sites. Generators of the field draw some discrete make-up of a crystal from the
training data's own histogram before generating the rest (DiffCSP and FlowMM the number of
atoms). Here the discrete make-up is the number of elements: each sample slot gets a target
count ``k`` drawn from the training crystals' histogram (or a count the user chooses: "give me
ternaries"), and latent codes are drawn from the prior and decoded, in rounds, until every slot
holds a decode with ``k`` elements. Each slot's crystal is the first decode of its count not
already taken, so the output follows ``p(k) p(crystal | k)`` with ``p(crystal | k)`` the prior's
decodes of that count.

The number of atoms per cell can be drawn the same way (DiffCSP and FlowMM draw it from the
training set): a prior may record the training crystals' joint table of (number of elements,
number of atoms) (:func:`makeup_table`), and each slot then also waits for a decode with its
atom count. A target is a pair ``(elements, atoms)`` in which 0 means "any".

A slot still empty after ``max_draws`` codes per slot (a count the prior hardly ever decodes
to) takes the unused decode nearest in count, and the slot is counted as unmatched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from nesf.data.crystal import Crystal

if TYPE_CHECKING:
    from nesf.api import NeSF
    from nesf.generation.prior import LatentPrior

#: Codes drawn per sample slot at most before a slot takes the nearest count (the shipped ``mp``
#: prior with its training crystals' histogram needs 2.9 per slot on average; RESULTS.md).
MAX_DRAWS = 40


def n_elements(crystal: Crystal) -> int:
    """Number of distinct elements of a crystal (0 for an empty decode)."""
    return int(np.unique(crystal.numbers).size)


def makeup(crystal: Crystal) -> tuple[int, int]:
    """``(number of elements, number of atoms)`` of a crystal (``(0, 0)`` for an empty decode)."""
    return n_elements(crystal), int(crystal.n_atoms)


def makeup_table(crystals: Iterable[Crystal]) -> list[list[float]]:
    """Joint shares of the crystals' make-ups: rows ``[elements, atoms, share]``, shares summing to 1.

    Raises:
        ValueError: no crystal, or an empty one.
    """
    pairs = [makeup(c) for c in crystals]
    if not pairs or min(min(p) for p in pairs) < 1:
        raise ValueError("need the make-up of at least one crystal with atoms")
    keys, counts = np.unique(np.asarray(pairs, dtype=np.int64), axis=0, return_counts=True)
    return [[int(k), int(a), float(c / len(pairs))] for (k, a), c in zip(keys, counts)]


def _check_table(table: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """A make-up table as ``([R, 2]`` int pairs, ``[R]`` shares summing to 1); raises ``ValueError`` if malformed."""
    try:
        rows = np.asarray(table, dtype=np.float64).reshape(-1, 3)
    except ValueError:
        raise ValueError(f"make-up table: needs rows [elements, atoms, share], got {table!r}") from None
    pairs, shares = rows[:, :2], rows[:, 2]
    if rows.size == 0 or not np.all(np.isfinite(rows)) or pairs.min() < 1 or np.any(pairs != np.round(pairs)):
        raise ValueError("make-up table: elements and atoms must be whole numbers >= 1")
    return pairs.astype(np.int64), check_histogram(shares, "make-up table")


def element_count_histogram(counts: Iterable[int]) -> list[float]:
    """Shares of crystals with 1, 2, ... elements (entry ``k - 1`` for ``k`` elements), summing to 1.

    Raises:
        ValueError: no count, or a count below 1.
    """
    counts = np.asarray(list(counts), dtype=np.int64)
    if counts.size == 0 or counts.min() < 1:
        raise ValueError("need the number of elements (>= 1) of at least one crystal")
    hist = np.bincount(counts - 1).astype(np.float64)
    return [float(h) for h in hist / hist.sum()]


def check_histogram(histogram: Sequence[float], source: str = "element-count histogram") -> np.ndarray:
    """A histogram as shares summing to 1 (raises ``ValueError`` for negative or all-zero entries)."""
    h = np.asarray(histogram, dtype=np.float64).reshape(-1)
    if h.size == 0 or not np.all(np.isfinite(h)) or h.min() < 0 or h.sum() <= 0:
        raise ValueError(f"{source}: needs non-negative shares with a positive sum, got {list(histogram)}")
    return h / h.sum()


def draw_targets(target: int | Sequence[float], n: int, seed: int) -> np.ndarray:
    """``[n]`` target numbers of elements: all ``target`` (an int), or drawn from a histogram (seeded)."""
    if isinstance(target, (int, np.integer)):
        if target < 1:
            raise ValueError(f"the number of elements must be at least 1, got {target}")
        return np.full(n, int(target), dtype=np.int64)
    h = check_histogram(target)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x656C]))
    return rng.choice(np.arange(1, h.size + 1), size=n, p=h).astype(np.int64)


def draw_makeups(
    elements: int | Sequence[float] | None,
    atoms: int | Sequence[Sequence[float]] | None,
    n: int,
    seed: int,
) -> np.ndarray:
    """``[n, 2]`` targets ``(elements, atoms)``, 0 meaning any (seeded).

    Args:
        elements: every crystal's number of elements (an int), a histogram to draw it from
            (:func:`element_count_histogram`), or None (any).
        atoms: every crystal's number of atoms (an int), a make-up table to draw it from
            (:func:`makeup_table`), or None (any). With a table, the atom count is drawn
            given the element count: jointly with it where ``elements`` is a histogram (the
            table's own element shares are used), from the table's rows of that count where
            ``elements`` is an int, from the table's atom shares where ``elements`` is None.
            Without a table the element counts are drawn exactly as :func:`draw_targets`.
        n: crystals.
        seed: seed of the draw.

    Raises:
        ValueError: a count below 1, a malformed table, or an element count the table lacks.
    """
    out = np.zeros((n, 2), dtype=np.int64)
    if atoms is None or isinstance(atoms, (int, np.integer)):
        if atoms is not None and atoms < 1:
            raise ValueError(f"the number of atoms must be at least 1, got {atoms}")
        if elements is not None:
            out[:, 0] = draw_targets(elements, n, seed)
        out[:, 1] = 0 if atoms is None else int(atoms)
        return out
    pairs, shares = _check_table(atoms)
    if isinstance(elements, (int, np.integer)):
        keep = pairs[:, 0] == int(elements)
        if not keep.any():
            raise ValueError(f"no training crystal of the make-up table holds {elements} elements")
        pairs, shares = pairs[keep], shares[keep] / shares[keep].sum()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6174]))
    out[:] = pairs[rng.choice(len(pairs), size=n, p=shares)]
    if elements is None:
        out[:, 0] = 0
    return out


def _as_pair(target: int | Sequence[int]) -> tuple[int, int]:
    """A slot's target as ``(elements, atoms)``: an int is a number of elements, any atoms."""
    if isinstance(target, (int, np.integer)):
        return int(target), 0
    k, a = (int(v) for v in target)
    return k, a


def _gap(crystal: Crystal, target: tuple[int, int]) -> tuple[int, int]:
    """How far a decode is from a target: (elements off, atoms off), 0 where the target says any."""
    k, a = makeup(crystal)
    return (abs(k - target[0]) if target[0] else 0, abs(a - target[1]) if target[1] else 0)


@dataclass
class MatchedDraw:
    """What :func:`draw_matched` returns.

    Attributes:
        crystals: one decode per slot, in slot order (an empty crystal where nothing decoded).
        drawn: latent codes drawn and decoded.
        unmatched: slots that took a decode of another count (the budget ran out).
    """

    crystals: list[Crystal]
    drawn: int
    unmatched: int


def draw_matched(
    sample_codes: Callable[[int, int], torch.Tensor],
    decode: Callable[[torch.Tensor], list[Crystal]],
    targets: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
    seed: Sequence[int],
    max_draws: int = MAX_DRAWS,
    piece: int | None = None,
) -> MatchedDraw:
    """Decodes of prior codes with the target make-ups, one per slot.

    Args:
        sample_codes: ``(m, seed) -> [m, D]`` codes (e.g. a prior's ``sample`` at a temperature).
        decode: codes ``[m, D]`` -> ``m`` crystals (empty ones included).
        targets: ``[S]`` number of elements wanted in each slot, or ``[S, 2]`` pairs
            ``(elements, atoms)`` with 0 for any (:func:`draw_makeups`).
        seed: entropy of this draw (e.g. ``(run seed, chunk)``); round ``r`` draws its codes with a
            seed derived from ``(*seed, r)``.
        max_draws: codes per slot at most.
        piece: decode each round's codes this many at a time and stop once every slot is
            filled (the same crystals, less work; give the decoder's own batch size so that
            its batches stay the same); None: each round's codes at once.

    Returns:
        A :class:`MatchedDraw`. The same arguments give the same crystals, whatever ``piece``.
    """
    targets = [_as_pair(t) for t in targets]
    slots: list[Crystal | None] = [None] * len(targets)
    waiting: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(targets):
        waiting.setdefault(t, []).append(i)
    pool: list[Crystal] = []  # decodes no slot took (for the budget's end)
    drawn, kept, budget, r = 0, 0, max(1, max_draws) * len(targets), 0
    while kept < len(targets) and drawn < budget:
        rate = (kept + 1) / (drawn + 1) if drawn else 0.5
        m = min(budget - drawn, max(8, math.ceil(1.2 * (len(targets) - kept) / rate)))
        round_seed = int(np.random.SeedSequence([*seed, r]).generate_state(1)[0] & 0x7FFFFFFF)
        codes = sample_codes(m, round_seed)
        step = piece or m
        for start in range(0, m, step):
            if kept == len(targets):
                break
            for crystal in decode(codes[start : start + step]):
                free = None
                if crystal.n_atoms:
                    k, a = makeup(crystal)
                    free = next((w for w in (waiting.get(key) for key in ((k, a), (k, 0), (0, a))) if w), None)
                if free:
                    slots[free.pop(0)] = crystal
                    kept += 1
                elif crystal.n_atoms:
                    pool.append(crystal)
            drawn += min(step, m - start)
        r += 1
    unmatched = 0
    for i, t in enumerate(targets):
        if slots[i] is None:
            unmatched += 1
            if pool:
                j = min(range(len(pool)), key=lambda j: _gap(pool[j], t))
                slots[i] = pool.pop(j)
            else:
                slots[i] = Crystal(np.eye(3), np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    return MatchedDraw([c for c in slots if c is not None], drawn, unmatched)


def matched_chunk(
    model: NeSF,
    prior: LatentPrior,
    targets: np.ndarray,
    slots: Sequence[int],
    seed: int,
    chunk: int,
    temperature: float | None = None,
    max_draws: int = MAX_DRAWS,
) -> MatchedDraw:
    """The crystals of sample slots ``slots`` (one chunk of a run), with ids ``sample-00042``.

    ``model`` is ready for sampling (:meth:`~nesf.api.NeSF.for_sampling`); ``targets`` ``[n]``
    holds every slot's number of elements (:func:`draw_targets`), or ``[n, 2]`` its make-up
    (:func:`draw_makeups`).

    The chunk draws its own codes (seeded by ``(seed, chunk)``), so chunks can be decoded in
    any order, by any process, and resumed: a run gives the same crystals however it is split.
    """

    def codes(m: int, round_seed: int) -> torch.Tensor:
        return prior.sample(m, seed=round_seed, temperature=temperature)

    piece = getattr(getattr(model, "settings", None), "batch_size", None)
    draw = draw_matched(codes, model.decode_crystals, np.asarray(targets)[list(slots)], (seed, chunk), max_draws, piece)
    for i, crystal in zip(slots, draw.crystals):
        crystal.id = f"sample-{i:05d}"
    return draw


def sample_matched(
    model: NeSF,
    prior: LatentPrior,
    n: int,
    target: int | Sequence[float] | None,
    seed: int = 0,
    temperature: float | None = None,
    chunk_size: int | None = None,
    max_draws: int = MAX_DRAWS,
    progress: bool = False,
    atoms: int | Sequence[Sequence[float]] | None = None,
) -> list[Crystal]:
    """``n`` samples with target make-ups, chunk by chunk as ``nesf sample`` makes them.

    Args:
        model: a :class:`~nesf.api.NeSF` ready for sampling.
        prior: its latent prior.
        n: crystals.
        target: every crystal's number of elements, a histogram to draw them from, or None (any).
        seed: seed of the targets and the codes.
        temperature: the prior's sampling temperature (default: its own).
        chunk_size: slots per chunk (default: ``nesf sample``'s, so both give the same crystals).
        max_draws: codes decoded per crystal at most.
        progress: show a progress bar.
        atoms: every crystal's number of atoms, a make-up table to draw it from, or None (any;
            see :func:`draw_makeups`).
    """
    from tqdm.auto import tqdm

    from nesf.io.stream import DEFAULT_CHUNK

    if target is None and atoms is None:
        raise ValueError("matched samples need a number of elements, a number of atoms, or both")
    size = chunk_size or DEFAULT_CHUNK
    targets = draw_makeups(target, atoms, n, seed)  # without atoms: the element counts of draw_targets
    out: list[Crystal] = []
    with tqdm(total=n, desc="sample", unit="crystal", disable=not progress) as bar:
        for k, start in enumerate(range(0, n, size)):
            slots = range(start, min(n, start + size))
            out.extend(matched_chunk(model, prior, targets, slots, seed, k, temperature, max_draws).crystals)
            bar.update(len(slots))
    return out


def _count_spec(value: str | None, recorded: list | None, flag: str, noun: str) -> int | list | None:
    """``--n-elements`` / ``--n-atoms VALUE``: the prior's record (``auto``), none (``any``) or a count >= 1."""
    if value is None or value == "auto":
        return recorded
    if value == "any":
        return None
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"number of {noun} ({flag}) {value!r}: give an integer, 'auto' or 'any'") from None
    if count < 1:
        raise ValueError(f"number of {noun} ({flag}) {value}: must be at least 1")
    return count


def atoms_spec(value: str | None, table: Sequence[Sequence[float]] | None) -> int | list[list[float]] | None:
    """The target of ``--n-atoms VALUE`` with a prior's recorded make-up table.

    ``None`` / ``"auto"``: the prior's table where it records one, else no target; ``"any"``: no
    target; an integer: every sample with that many atoms per cell.

    Raises:
        ValueError: anything else.
    """
    recorded = None if table is None else [list(r) for r in table]
    return _count_spec(value, recorded, "--n-atoms", "atoms")


def target_spec(value: str | None, histogram: Sequence[float] | None) -> int | list[float] | None:
    """The target of ``--n-elements VALUE`` with a prior's recorded histogram.

    ``None`` / ``"auto"``: the prior's histogram where it records one, else no target; ``"any"``:
    no target; an integer: every sample with that many elements.

    Raises:
        ValueError: anything else.
    """
    return _count_spec(value, None if histogram is None else list(histogram), "--n-elements", "elements")


__all__ = [
    "MAX_DRAWS",
    "MatchedDraw",
    "atoms_spec",
    "check_histogram",
    "draw_makeups",
    "draw_matched",
    "draw_targets",
    "matched_chunk",
    "sample_matched",
    "element_count_histogram",
    "makeup",
    "makeup_table",
    "n_elements",
    "target_spec",
]
