"""Settings of the reconstruction algorithm (published values as defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Rules that pick the symmetrisation tolerance (see :func:`nesf.reconstruction.symmetry.pick_tolerance`).
SYMMETRY_RULES = ("largest", "stable")

#: The spglib tolerance ladder of symmetrisation, Angstrom (chosen on validation data, benchmarks/precision.py).
SYMMETRY_LADDER = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

#: The largest mean move of the atoms a snap may make, Angstrom (chosen likewise).
SYMMETRY_MEAN_MOVE = 0.12


@dataclass
class ReconstructionSettings:
    """How particles become atoms. Defaults are the published settings.

    Attributes:
        grid_spacing: spacing of the initial particle grid, Angstrom (paper: 0.5).
        n_steps: maximum number of moves ``x <- x + p(x)`` (paper: 64).
        max_residual: particles whose last step is longer than this are dropped, Angstrom (paper: 0.9).
        nms_radius: clustering radius of the non-maximum suppression, Angstrom (paper: 0.5).
        min_particles: a cluster needs at least this many particles to be an atom (paper: 10).
        species_grid: points per axis of the species-vote grid around an atom (paper: 6).
        species_spacing: spacing of that grid, Angstrom (paper: 0.1).
        converge_tol: a particle whose step is shorter than this stops moving, Angstrom
            (beyond the paper: saves field evaluations; the field is a fixed point there).
        merge_tol: particles that fall in the same cube of this size are merged into one
            weighted particle, Angstrom (beyond the paper; 0 disables merging).
        batch_size: crystals reconstructed together.
        polish_steps: after clustering, each atom is moved this many times to the mean of
            ``x + p(x)`` over queries ``x`` on shells around it (beyond the paper; 0: off).
            The field points at the atom from every side, so its bias cancels in the mean.
        polish_radii: radii of those shells, Angstrom.
        polish_directions: queries per shell (a Fibonacci sphere).
        symmetrize: snap each decoded crystal onto the space group found in it
            (:func:`nesf.reconstruction.symmetry.symmetrize`; beyond the paper). Uses only the
            decoded crystal; P1 crystals stay as they are.
        symmetry_tolerances: the spglib tolerance ladder, Angstrom (ascending).
        symmetry_rule: how a tolerance is picked from the ladder (``"largest"``: the largest
            whose group is above P1; ``"stable"``: the largest whose group was also found at the
            tolerance below).
        symmetry_mean_move: a snap that moves the atoms farther than this on average
            (Angstrom) is refused and the next smaller tolerance tried (0: no such limit).
        symmetry_mean_move_large: the mean-move limit for cells of ``symmetry_atoms_ramp[1]``
            atoms or more, rising linearly from ``symmetry_mean_move`` at ``symmetry_atoms_ramp[0]``
            atoms (0: ``symmetry_mean_move`` for every cell). A learned field places the atoms of
            large cells less precisely, so their true group lies further from the decoded sites.
        symmetry_atoms_ramp: the atom counts between which the mean-move limit rises.
        symmetry_primitive: refuse a group with a pure translation the decoded cell does not have
            (a group that would make the cell a supercell), and try the next smaller tolerance. For
            models trained on primitive cells (``--primitive-cell``), which decode primitive cells.
        symmetry_max_strain: a snap that changes the cell more than this is refused and the next
            smaller tolerance tried (:func:`nesf.reconstruction.symmetry.cell_strain`: the
            largest change of the metric tensor relative to its largest entry; 0: no limit).
        species_min_atoms: an element appears in a decoded crystal only if the species field
            gives it at least this many atoms' worth of probability, summed over the crystal's
            atoms (each atom's probability is the mean softmax over its vote grid); atoms voted
            to a dropped element take the kept element with most votes, ties broken by
            probability (beyond the paper; 0: off, every atom keeps its own vote). The crystal's
            most probable element is always kept. Neural fields only.
        pin_origin: models trained in the canonical setting: move each decoded crystal rigidly so
            that its atom nearest the origin (within 0.5 A) sits exactly on it, as the setting
            puts one there (:func:`nesf.data.setting.pin_origin`; beyond the paper). Uses only the
            decoded crystal; applied after symmetrising.
    """

    grid_spacing: float = 0.5
    n_steps: int = 64
    max_residual: float = 0.9
    nms_radius: float = 0.5
    min_particles: int = 10
    species_grid: int = 6
    species_spacing: float = 0.1
    converge_tol: float = 1e-4
    merge_tol: float = 1e-3
    batch_size: int = 64
    polish_steps: int = 0
    polish_radii: tuple[float, ...] = (0.5, 0.75, 1.0)
    polish_directions: int = 32
    symmetrize: bool = False
    symmetry_tolerances: tuple[float, ...] = SYMMETRY_LADDER
    symmetry_rule: str = "largest"
    symmetry_mean_move: float = SYMMETRY_MEAN_MOVE
    symmetry_mean_move_large: float = 0.0
    symmetry_atoms_ramp: tuple[int, int] = (6, 10)
    symmetry_primitive: bool = False
    symmetry_max_strain: float = 0.0
    species_min_atoms: float = 0.0
    pin_origin: bool = False

    def __post_init__(self) -> None:
        for name in ("grid_spacing", "nms_radius", "species_spacing", "max_residual"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_steps < 1 or self.min_particles < 1 or self.species_grid < 1 or self.batch_size < 1:
            raise ValueError("n_steps, min_particles, species_grid and batch_size must be at least 1")
        if self.converge_tol < 0 or self.merge_tol < 0:
            raise ValueError("converge_tol and merge_tol must not be negative")
        self.polish_radii = tuple(float(r) for r in self.polish_radii)
        self.symmetry_tolerances = tuple(sorted(float(t) for t in self.symmetry_tolerances))
        if self.polish_steps < 0 or self.polish_directions < 1 or not all(r > 0 for r in self.polish_radii):
            raise ValueError("polish_steps must not be negative, polish_directions and polish_radii must be positive")
        if not self.symmetry_tolerances or not all(t > 0 for t in self.symmetry_tolerances):
            raise ValueError(f"symmetry_tolerances must be positive, got {self.symmetry_tolerances}")
        if self.species_min_atoms < 0:
            raise ValueError(f"species_min_atoms must not be negative, got {self.species_min_atoms}")
        if self.symmetry_max_strain < 0:
            raise ValueError(f"symmetry_max_strain must not be negative, got {self.symmetry_max_strain}")
        if self.symmetry_mean_move < 0:
            raise ValueError(f"symmetry_mean_move must not be negative, got {self.symmetry_mean_move}")
        self.symmetry_atoms_ramp = tuple(int(n) for n in self.symmetry_atoms_ramp)
        lo_hi = self.symmetry_atoms_ramp
        if len(lo_hi) != 2 or not 1 <= lo_hi[0] < lo_hi[1]:
            raise ValueError(f"symmetry_atoms_ramp must be two atom counts 1 <= lo < hi, got {lo_hi}")
        if self.symmetry_mean_move_large < 0:
            raise ValueError(f"symmetry_mean_move_large must not be negative, got {self.symmetry_mean_move_large}")
        if self.symmetry_rule not in SYMMETRY_RULES:
            raise ValueError(f"unknown symmetry_rule {self.symmetry_rule!r}; choose one of {', '.join(SYMMETRY_RULES)}")

    def mean_move_limit(self, n_atoms: int) -> float:
        """The largest mean move (Angstrom) a snap of a crystal of ``n_atoms`` atoms may make (0: any)."""
        small, large = self.symmetry_mean_move, self.symmetry_mean_move_large
        if not large or not small:
            return small
        lo, hi = self.symmetry_atoms_ramp
        share = min(1.0, max(0.0, (n_atoms - lo) / (hi - lo)))
        return small + share * (large - small)

    def to_dict(self) -> dict:
        """Plain dict (for JSON and checkpoints)."""
        return asdict(self)
