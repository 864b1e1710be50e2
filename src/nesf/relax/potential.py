"""CHGNet relaxation of crystals: relaxed structure, energy per atom, RMSD to the relaxed form, kept symmetry.

The potential is the pretrained CHGNet (the ``relax`` extra: ``pip install 'nesf[relax]'``; its
weights ship inside the wheel, so it works offline). Each crystal is relaxed on its own with
CHGNet's ``StructOptimizer`` (ASE's FIRE, cell and positions together through the
``FrechetCellFilter``) until the largest force is below ``fmax`` (eV/A) or ``steps`` steps have
run. A crystal the potential cannot handle (atoms on top of each other, a force that is not a
number) is recorded with its error instead of stopping the run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from nesf.data.crystal import Crystal, carried_info
from nesf.errors import NesfError
from nesf.relax.checks import rmsd_to_relaxed, space_group_number

#: The message when CHGNet is missing.
MISSING = "needs the relax extra: pip install 'nesf[relax]'"

#: The CHGNet weights used (the pretrained model shipped in the chgnet wheel).
CHGNET_MODEL = "0.3.0"


class RelaxError(NesfError):
    """The relaxation cannot run (the potential is missing, or settings are wrong)."""


def require_chgnet(what: str = "nesf relax") -> None:
    """Raise :class:`RelaxError` with the install hint when chgnet cannot be imported."""
    try:
        import chgnet  # noqa: F401
    except ImportError:
        raise RelaxError(f"{what} {MISSING}") from None


@functools.cache
def load_chgnet(device: str = "cpu"):  # noqa: ANN201
    """The pretrained CHGNet model (loaded once per process and device, quietly)."""
    require_chgnet()
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNet.load(model_name=CHGNET_MODEL, use_device=device, verbose=False)


def model_tag() -> str:
    """Name and version of the potential, as recorded in outputs and cache keys."""
    import chgnet

    return f"CHGNet {CHGNET_MODEL} (chgnet {chgnet.__version__})"


@dataclass
class RelaxSettings:
    """How crystals are relaxed.

    Attributes:
        fmax: force convergence criterion, eV/A (largest force component norm, cell stress included).
        steps: most FIRE steps per crystal.
        relax_cell: relax the cell as well as the positions.
        symprec: spglib tolerance for the space groups before and after, Angstrom.
        device: torch device of the potential.
    """

    fmax: float = 0.1
    steps: int = 500
    relax_cell: bool = True
    symprec: float = 0.1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.fmax > 0:
            raise RelaxError(f"fmax must be a positive force in eV/A, got {self.fmax}")
        if self.steps < 1:
            raise RelaxError(f"steps must be at least 1, got {self.steps}")


@dataclass
class RelaxResult:
    """One crystal's relaxation.

    Attributes:
        id: the crystal's id.
        formula: reduced formula.
        n_atoms: atoms in the cell.
        energy_per_atom_ev: CHGNet energy of the relaxed crystal, eV/atom (None: failed).
        initial_energy_per_atom_ev: CHGNet energy of the crystal as given, eV/atom.
        rmsd_a: RMSD between the crystal and its relaxed form, Angstrom.
        rmsd_method: ``matcher`` (pymatgen ``StructureMatcher.get_rms_dist``, scaled to Angstrom)
            or ``fixed_order`` (atom i to atom i, minimum image, translation removed), the
            fallback when the matcher finds no match.
        volume_change_pct: relative change of the cell volume, %.
        spacegroup_before: spglib space group number of the crystal as given (``symprec``).
        spacegroup_after: the same of the relaxed crystal.
        spacegroup_kept: both numbers equal.
        steps: FIRE steps taken.
        converged: stopped by ``fmax`` rather than the step cap.
        seconds: wall time of this crystal's relaxation.
        error: why the relaxation failed (None: it ran).
        relaxed: the relaxed crystal (None: failed); not part of :meth:`row`.
    """

    id: str
    formula: str
    n_atoms: int
    energy_per_atom_ev: float | None = None
    initial_energy_per_atom_ev: float | None = None
    rmsd_a: float | None = None
    rmsd_method: str | None = None
    volume_change_pct: float | None = None
    spacegroup_before: int | None = None
    spacegroup_after: int | None = None
    spacegroup_kept: bool | None = None
    steps: int = 0
    converged: bool = False
    seconds: float = 0.0
    error: str | None = None
    relaxed: Crystal | None = field(default=None, repr=False)

    def row(self) -> dict:
        """The table row of this result (everything but the relaxed crystal)."""
        out = asdict(self)
        out.pop("relaxed")
        return out


#: Row keys carried as a relaxed crystal's extxyz properties (prefixed ``relax_`` where ambiguous).
PROPERTY_KEYS = (
    "energy_per_atom_ev",
    "initial_energy_per_atom_ev",
    "rmsd_a",
    "rmsd_method",
    "spacegroup_before",
    "spacegroup_after",
    "spacegroup_kept",
    "steps",
    "converged",
    "error",
)


def result_properties(result: RelaxResult) -> dict:
    """The relaxation fields stored in a crystal's ``info['properties']`` (names prefixed ``relax_``)."""
    row = result.row()
    if row["error"] is not None:  # plain words only: the value travels in an extxyz comment line
        row["error"] = re.sub(r"[^A-Za-z0-9 .,:;()+-]", " ", row["error"]).strip() or "failed"
    return {f"relax_{k}": row[k] for k in PROPERTY_KEYS if row[k] is not None}


class Relaxer:
    """Relaxes crystals with CHGNet (see the module docstring).

    Args:
        settings: the relaxation settings (default :class:`RelaxSettings`).
    """

    def __init__(self, settings: RelaxSettings | None = None) -> None:
        require_chgnet()
        from chgnet.model import StructOptimizer

        self.settings = settings or RelaxSettings()
        with contextlib.redirect_stdout(io.StringIO()):
            self._optimizer = StructOptimizer(
                model=load_chgnet(self.settings.device),
                optimizer_class="FIRE",
                use_device=self.settings.device,
                on_isolated_atoms="ignore",
            )

    def relax_one(self, crystal: Crystal) -> RelaxResult:
        """Relax one crystal; failures are recorded in the result, not raised."""
        s = self.settings
        result = RelaxResult(crystal.id, crystal.formula if crystal.n_atoms else "", crystal.n_atoms)
        if crystal.n_atoms == 0:
            result.error = "no atoms"
            return result
        start = time.monotonic()
        result.spacegroup_before = space_group_number(crystal, s.symprec)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                out = self._optimizer.relax(
                    crystal.to_pymatgen(),
                    fmax=s.fmax,
                    steps=s.steps,
                    relax_cell=s.relax_cell,
                    verbose=False,
                    assign_magmoms=False,
                )
            final = out["final_structure"]
            energies = np.asarray(out["trajectory"].energies, dtype=float)
            relaxed = Crystal.from_pymatgen(final, id=crystal.id)
            if not (np.isfinite(energies).all() and np.isfinite(relaxed.cart).all() and relaxed.volume > 0):
                raise ValueError("the potential gave energies or positions that are not finite numbers")
        except Exception as exc:  # a crystal CHGNet cannot handle: record it and go on
            result.error = (str(exc).splitlines() or [type(exc).__name__])[0][:200] or type(exc).__name__
            result.seconds = time.monotonic() - start
            return result
        relaxed.info = carried_info(crystal.info)
        result.relaxed = relaxed
        result.initial_energy_per_atom_ev = float(energies[0]) / crystal.n_atoms
        result.energy_per_atom_ev = float(energies[-1]) / crystal.n_atoms
        # the observer records the start, every step, and the end once more
        result.steps = max(0, len(energies) - 2)
        result.converged = result.steps < s.steps
        result.rmsd_a, result.rmsd_method = rmsd_to_relaxed(crystal, relaxed)
        result.volume_change_pct = 100.0 * (relaxed.volume / crystal.volume - 1.0)
        result.spacegroup_after = space_group_number(relaxed, s.symprec)
        result.spacegroup_kept = result.spacegroup_before is not None and (
            result.spacegroup_before == result.spacegroup_after
        )
        result.seconds = time.monotonic() - start
        relaxed.info.setdefault("properties", {})
        relaxed.info["properties"] = {**relaxed.info["properties"], **result_properties(result)}
        return result

    def relax(self, crystals: Sequence[Crystal], progress: bool = True) -> list[RelaxResult]:
        """Relax crystals one by one (a progress bar with ``progress``)."""
        return [self.relax_one(c) for c in tqdm(list(crystals), desc="relax", unit="crystal", disable=not progress)]


def static_energies(crystals: Sequence[Crystal], device: str = "cpu", batch_size: int = 16) -> list[float | None]:
    """CHGNet energies per atom (eV/atom) of crystals as they are, no relaxation (None where CHGNet fails)."""
    model = load_chgnet(device)
    out: list[float | None] = [None] * len(crystals)
    crystals = list(crystals)
    for start in range(0, len(crystals), batch_size):
        chunk = crystals[start : start + batch_size]
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                preds = model.predict_structure([c.to_pymatgen() for c in chunk], task="e", batch_size=batch_size)
            values = [float(np.asarray(p["e"]).reshape(-1)[0]) for p in preds]
        except Exception:  # one bad crystal spoils a batch: go one by one
            values = []
            for c in chunk:
                try:
                    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                        warnings.simplefilter("ignore")
                        p = model.predict_structure(c.to_pymatgen(), task="e")
                    values.append(float(np.asarray(p["e"]).reshape(-1)[0]))
                except Exception:
                    values.append(float("nan"))
        for i, v in enumerate(values):
            out[start + i] = v if np.isfinite(v) else None
    return out


__all__ = [
    "CHGNET_MODEL",
    "MISSING",
    "RelaxError",
    "RelaxResult",
    "RelaxSettings",
    "Relaxer",
    "load_chgnet",
    "model_tag",
    "require_chgnet",
    "result_properties",
    "static_energies",
]
