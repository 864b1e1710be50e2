"""Samples with a chosen number of elements (nesf.generation.elements)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nesf.data.crystal import Crystal
from nesf.generation.elements import (
    atoms_spec,
    draw_makeups,
    draw_matched,
    draw_targets,
    element_count_histogram,
    makeup,
    makeup_table,
    n_elements,
    target_spec,
)


def _codes(m: int, seed: int) -> torch.Tensor:
    """Fake prior: codes whose first entry says how many elements their decode holds (1-4, seeded)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 5, (m, 1), generator=g).float()


def _decode(z: torch.Tensor) -> list[Crystal]:
    """Fake decoder: k elements on k atoms of a cubic cell; 0 gives an empty crystal."""
    out = []
    for k in z[:, 0].long().tolist():
        numbers = np.arange(1, k + 1) * 3
        out.append(Crystal(4.0 * np.eye(3), np.arange(3 * k).reshape(k, 3) % 4 * 1.0, numbers))
    return out


def _codes2(m: int, seed: int) -> torch.Tensor:
    """Fake prior of make-ups: entry 0 the number of elements (1-3), entry 1 extra atoms (0-2)."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(1, 4, (m,), generator=g), torch.randint(0, 3, (m,), generator=g)], 1).float()


def _decode2(z: torch.Tensor, calls: list | None = None) -> list[Crystal]:
    """Fake decoder: k elements, k + extra atoms (the first element repeated)."""
    if calls is not None:
        calls.append(len(z))
    out = []
    for k, extra in z.long().tolist():
        numbers = np.concatenate([np.arange(1, k + 1), np.ones(extra, dtype=np.int64)]) * 3
        out.append(Crystal(5.0 * np.eye(3), np.random.default_rng(0).random((k + extra, 3)) * 5.0, numbers))
    return out


def test_histogram_and_targets():
    hist = element_count_histogram([2, 3, 3, 3, 1, 2, 2, 3])
    assert hist == pytest.approx([1 / 8, 3 / 8, 4 / 8])
    t = draw_targets(hist, 4000, seed=1)
    assert np.array_equal(t, draw_targets(hist, 4000, seed=1))
    assert not np.array_equal(t, draw_targets(hist, 4000, seed=2))
    shares = np.bincount(t, minlength=4)[1:] / t.size
    assert shares == pytest.approx(hist, abs=0.03)
    assert set(draw_targets(3, 5, seed=0)) == {3}
    with pytest.raises(ValueError, match="at least one crystal"):
        element_count_histogram([])
    with pytest.raises(ValueError, match="non-negative"):
        draw_targets([0.0, -1.0], 3, seed=0)


def test_every_slot_gets_its_count_in_order_and_deterministically():
    targets = [3, 1, 1, 4, 2, 3, 1]
    draw = draw_matched(_codes, _decode, targets, seed=(5, 0))
    assert [n_elements(c) for c in draw.crystals] == targets
    assert draw.unmatched == 0 and draw.drawn >= len(targets)
    again = draw_matched(_codes, _decode, targets, seed=(5, 0))
    assert all(np.array_equal(a.numbers, b.numbers) for a, b in zip(draw.crystals, again.crystals))
    other = draw_matched(_codes, _decode, targets, seed=(5, 1))
    assert [n_elements(c) for c in other.crystals] == targets


def test_a_count_the_decoder_never_makes_takes_the_nearest_after_the_budget():
    draw = draw_matched(_codes, _decode, [2, 7], seed=(0, 0), max_draws=10)
    assert draw.drawn <= 20 and draw.unmatched == 1
    assert [n_elements(c) for c in draw.crystals] == [2, 4]  # 4 is the most any decode holds


def test_empty_decodes_fill_nothing():
    def empty(z: torch.Tensor) -> list[Crystal]:
        return [Crystal(np.eye(3), np.zeros((0, 3)), np.zeros(0, dtype=np.int64)) for _ in range(len(z))]

    draw = draw_matched(_codes, empty, [1, 2], seed=(0, 0), max_draws=3)
    assert draw.unmatched == 2 and all(c.n_atoms == 0 for c in draw.crystals)


def test_target_spec():
    assert target_spec("auto", [0.5, 0.5]) == [0.5, 0.5]
    assert target_spec("auto", None) is None
    assert target_spec("any", [0.5, 0.5]) is None
    assert target_spec("3", None) == 3
    with pytest.raises(ValueError, match="--n-elements"):
        target_spec("ternary", None)
    with pytest.raises(ValueError, match="must be at least 1"):
        target_spec("0", None)


def test_the_command_line_states_the_draw_budget_and_stays_torch_free():
    """`nesf sample --help` names MAX_DRAWS, and building the parser imports no torch (`nesf models` needs none)."""
    import subprocess
    import sys

    from nesf.generation.elements import MAX_DRAWS

    code = (
        "import sys, contextlib, io\n"
        "from nesf.cli import build_parser\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    build_parser().parse_args(['sample', '--help'])\n"
        "print('torch' in sys.modules)\n"
        "print(out.getvalue())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, _, help_text = done.stdout.partition("\n")
    assert first == "False", "building nesf's command line imported torch"
    assert f"(default {MAX_DRAWS})" in " ".join(help_text.split())


def test_makeup_table_and_draws():
    crystals = _decode2(torch.tensor([[1, 0], [2, 1], [2, 1], [3, 2]]))
    assert [makeup(c) for c in crystals] == [(1, 1), (2, 3), (2, 3), (3, 5)]
    table = makeup_table(crystals)
    assert table == [[1, 1, 0.25], [2, 3, 0.5], [3, 5, 0.25]]
    joint = draw_makeups([0.25, 0.5, 0.25], table, 400, seed=3)
    assert {tuple(r) for r in joint.tolist()} == {(1, 1), (2, 3), (3, 5)}  # pairs the table holds, never mixed
    assert np.array_equal(joint, draw_makeups([0.25, 0.5, 0.25], table, 400, seed=3))
    assert 0.4 < np.mean(joint[:, 0] == 2) < 0.6
    atoms_only = draw_makeups(None, table, 50, seed=0)
    assert set(atoms_only[:, 0]) == {0} and set(atoms_only[:, 1]) <= {1, 3, 5}
    assert set(map(tuple, draw_makeups(2, table, 20, seed=0).tolist())) == {(2, 3)}  # the table given 2 elements
    fixed = draw_makeups([0.5, 0.5], 7, 30, seed=2)
    assert set(fixed[:, 1]) == {7} and np.array_equal(fixed[:, 0], draw_targets([0.5, 0.5], 30, seed=2))
    assert draw_makeups(None, 4, 2, seed=0).tolist() == [[0, 4], [0, 4]]
    with pytest.raises(ValueError, match="holds 4 elements"):
        draw_makeups(4, table, 3, seed=0)
    with pytest.raises(ValueError, match="whole numbers"):
        draw_makeups(None, [[1.5, 2, 1.0]], 3, seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        draw_makeups(None, 0, 3, seed=0)


def test_slots_get_their_makeup_and_pieces_change_only_the_work():
    targets = [(2, 3), (1, 1), (3, 0), (0, 4), (2, 2), (1, 3)]
    calls: list = []
    draw = draw_matched(_codes2, lambda z: _decode2(z, calls), targets, seed=(1, 0))
    assert draw.unmatched == 0
    for c, (k, a) in zip(draw.crystals, targets):
        assert (k == 0 or n_elements(c) == k) and (a == 0 or c.n_atoms == a)
    pieces: list = []
    again = draw_matched(_codes2, lambda z: _decode2(z, pieces), targets, seed=(1, 0), piece=4)
    assert all(np.array_equal(a.numbers, b.numbers) for a, b in zip(draw.crystals, again.crystals))
    assert max(pieces) <= 4 and again.drawn == sum(pieces) <= draw.drawn == sum(calls)


def test_atoms_spec():
    table = [[1, 2, 1.0]]
    assert atoms_spec("auto", table) == table and atoms_spec(None, None) is None
    assert atoms_spec("any", table) is None and atoms_spec("5", None) == 5
    with pytest.raises(ValueError, match="--n-atoms"):
        atoms_spec("many", None)
    with pytest.raises(ValueError, match="must be at least 1"):
        atoms_spec("0", table)
