"""Shipped property heads and evaluators (``weights/heads/``), found by model and target name or by path.

A head of model ``M`` for target ``T`` ships as ``weights/heads/M-T.pt`` (it reads latent codes:
what optimisation and conditional sampling steer), a head that reads the crystal itself, for
prediction, as ``weights/heads/M-T.crystal.pt``, and the evaluator that scores designs as
``weights/heads/M-T.evaluator.pt``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nesf.errors import CheckpointError


def heads_folder() -> Path:
    """The folder of the shipped heads."""
    return Path(str(resources.files("nesf") / "weights" / "heads"))


def shipped_heads() -> list[tuple[str, str]]:
    """``(model, target)`` of every shipped head."""
    folder = heads_folder()
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.pt")):
        if p.name.endswith((".evaluator.pt", ".crystal.pt")) or "-" not in p.stem:
            continue
        model, target = p.stem.split("-", 1)
        out.append((model, target))
    return out


def describe_source(source: str | None) -> str | None:
    """How a report names a head or evaluator file: ``shipped:NAME`` for a shipped one, else the path given."""
    if not source:
        return source
    path = Path(source)
    try:
        return f"shipped:{path.resolve().relative_to(heads_folder().resolve())}"
    except ValueError:
        return str(source)


def model_name(source: str | None) -> str | None:
    """The shipped-model name of a model loaded from ``source`` (its file stem), None if unknown."""
    return Path(source).stem if source else None


def resolve_head_path(spec: str | Path, model: str | None = None, reads: str = "latent") -> Path:
    """A head file: ``spec`` itself when it is a file, else the shipped head of ``model`` for target ``spec``.

    ``reads``: which shipped head a target name means: ``"latent"`` (the head on codes),
    ``"crystal"`` (the head on site tables) or ``"auto"`` (the crystal head where one ships,
    else the latent one: the better predictor).

    Raises:
        CheckpointError: neither a file nor a shipped head (the message lists the shipped ones).
    """
    path = Path(spec)
    if path.is_file():
        return path
    if model:
        names = {"latent": ["pt"], "crystal": ["crystal.pt"], "auto": ["crystal.pt", "pt"]}.get(reads, ["pt"])
        for suffix in names:
            candidate = heads_folder() / f"{model}-{spec}.{suffix}"
            if candidate.is_file():
                return candidate
    shipped = ", ".join(f"{m} {t}" for m, t in shipped_heads()) or "none"
    where = f" of model {model}" if model else ""
    raise CheckpointError(f"{spec}: no such head file, and no shipped head{where} for that target (shipped: {shipped})")


def resolve_evaluator_path(
    spec: str | Path | None, model: str | None, target: str, head_path: Path | None = None
) -> Path:
    """An evaluator file: ``spec`` when given, else one beside the head (``HEAD.evaluator.pt``), else the shipped one.

    Raises:
        CheckpointError: ``spec`` is not a file, or none is given and none is found.
    """
    if spec is not None:
        path = Path(spec)
        if not path.is_file():
            raise CheckpointError(f"{spec}: no such evaluator file")
        return path
    candidates = []
    if head_path is not None:
        candidates.append(head_path.with_name(head_path.name[: -len(".pt")] + ".evaluator.pt"))
    if model:
        candidates.append(heads_folder() / f"{model}-{target}.evaluator.pt")
    for c in candidates:
        if c.is_file():
            return c
    raise CheckpointError(
        f"no independent evaluator for {model or 'this model'} {target}: give one (--evaluator FILE); shipped "
        "evaluators exist for the shipped heads"
    )


__all__ = ["heads_folder", "model_name", "resolve_evaluator_path", "resolve_head_path", "shipped_heads"]
