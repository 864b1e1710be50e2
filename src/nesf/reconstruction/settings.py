"""Settings of the reconstruction algorithm (published values as defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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

    def __post_init__(self) -> None:
        for name in ("grid_spacing", "nms_radius", "species_spacing", "max_residual"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_steps < 1 or self.min_particles < 1 or self.species_grid < 1 or self.batch_size < 1:
            raise ValueError("n_steps, min_particles, species_grid and batch_size must be at least 1")
        if self.converge_tol < 0 or self.merge_tol < 0:
            raise ValueError("converge_tol and merge_tol must not be negative")

    def to_dict(self) -> dict:
        """Plain dict (for JSON and checkpoints)."""
        return asdict(self)
