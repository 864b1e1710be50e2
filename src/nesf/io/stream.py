"""Runs over large sets of crystals: read lazily, worked in chunks, each chunk's result saved as it is done.

A run writes into ``OUT.partial/`` beside its final output, so a half-done run is plain to see:
a manifest saying what the run is (command, model, inputs, options) and one shard per finished
chunk, each written atomically. A killed run leaves its finished shards; ``--resume`` continues
where it stopped, redoing nothing and duplicating nothing. When every chunk is done the shards are
merged, in input order, into the final output and the partial folder is removed.

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` in the environment) each process takes every
``WORLD_SIZE``-th chunk, and the processes meet at a barrier (``torch.distributed``, gloo) before
the first process merges; since every crystal's result depends on that crystal alone, the merged
output is the one a single process writes. Several machines need a folder they all see.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from nesf.errors import NesfError, OutputError
from nesf.io.writers import atomic_write, write_json

#: Crystals per chunk (one shard each) unless a command says otherwise.
DEFAULT_CHUNK = 256


def process_rank() -> tuple[int, int]:
    """This process's rank and the number of processes (``torchrun``'s ``RANK`` / ``WORLD_SIZE``; else 0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    if world < 1 or not 0 <= rank < world:
        raise NesfError(f"RANK={rank} and WORLD_SIZE={world} describe no process of a run")
    return rank, world


def input_signature(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """What identifies the inputs of a run (path, size, modification time), to refuse resuming on changed ones."""
    out = []
    for p in paths:
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            out.append({"path": str(f), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class ChunkedRun:
    """One resumable, shardable run writing ``out`` (see the module's description).

    Args:
        out: the final output (file or folder); the run works in ``out.partial``.
        manifest: plain data saying what the run is; a resumed run must have the same.
        resume: continue the half-done run in ``out.partial`` (refused if its manifest differs).
        chunk_size: crystals per chunk (part of the manifest: resuming keeps the chunks).
    """

    def __init__(
        self, out: str | Path, manifest: dict[str, Any], resume: bool = False, chunk_size: int = DEFAULT_CHUNK
    ) -> None:
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.manifest = {**manifest, "chunk_size": int(chunk_size), "format": 1}
        self.chunk_size = int(chunk_size)
        self.rank, self.world = process_rank()
        self.n_chunks = 0
        self.resumed_chunks = 0
        self._begin(resume)

    # ------------------------------------------------------------------ set-up
    def _begin(self, resume: bool) -> None:
        if self.rank == 0:
            self._prepare(resume)
        self.barrier()
        if self.rank != 0 and not (self.partial / "manifest.json").is_file():
            raise NesfError(f"{self.partial}: the first process made no manifest")

    def _prepare(self, resume: bool) -> None:
        manifest = self.partial / "manifest.json"
        if self.partial.exists():
            if not resume:
                raise OutputError(
                    f"{self.partial}: a half-done run into {self.out.name} is there; --resume continues it "
                    "(or delete the folder to start again)"
                )
            try:
                before = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                raise OutputError(f"{self.partial}: not a run's partial folder (no readable manifest.json)") from None
            if before != json.loads(json.dumps(self.manifest)):
                changed = sorted(k for k in set(before) | set(self.manifest) if before.get(k) != self.manifest.get(k))
                raise OutputError(
                    f"{self.partial}: the half-done run was another ({', '.join(changed)} differ); "
                    "run it with its own options, or delete the folder to start again"
                )
            self.resumed_chunks = len(list(self.partial.glob("chunk-*.npz")))
            for stale in self.partial.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            return
        if resume and self.out.exists():
            raise OutputError(f"{self.out}: nothing to resume: the output is complete")
        self.partial.mkdir(parents=True)
        write_json(manifest, self.manifest)

    def barrier(self) -> None:
        """Wait for every process of the run (a no-op for one process)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timedelta(days=7))
        dist.barrier()

    # ------------------------------------------------------------------ chunks
    def shard(self, k: int) -> Path:
        """The shard file of chunk ``k``."""
        return self.partial / f"chunk-{k:07d}.npz"

    def chunks(self, items: Iterable[Any]) -> Iterator[tuple[int, list[Any]]]:
        """``(k, chunk)`` for this process's chunks not done yet; every chunk is counted in :attr:`n_chunks`."""
        for k, chunk in enumerate(chunked(items, self.chunk_size)):
            self.n_chunks = k + 1
            if k % self.world == self.rank and not self.shard(k).is_file():
                yield k, chunk

    def save(self, k: int, **arrays: np.ndarray) -> None:
        """Chunk ``k``'s result (NumPy arrays, no objects), atomically."""

        def write(p: Path) -> None:
            with open(p, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_write(self.shard(k), write)

    def load(self, k: int) -> dict[str, np.ndarray]:
        """Chunk ``k``'s saved arrays."""
        with np.load(self.shard(k), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def finish(self, merge: Callable[[list[Path], Path], None]) -> bool:
        """Once every process is done, the first merges the shards into the output; True in that process.

        ``merge(shards, tmp)`` writes the final output to ``tmp`` from the shards in input order;
        ``tmp`` is then renamed onto the output and the partial folder removed.
        """
        self.barrier()
        if self.rank != 0:
            self.barrier()
            return False
        shards = [self.shard(k) for k in range(self.n_chunks)]
        missing = [p.name for p in shards if not p.is_file()]
        if missing:
            raise NesfError(f"{self.partial}: {len(missing)} chunk(s) missing ({missing[0]}, ...); run with --resume")
        tmp = self.out.with_name(f".{self.out.name}.merge-{os.getpid()}-{int(time.time())}")
        try:
            merge(shards, tmp)
            if self.out.is_dir():
                shutil.rmtree(self.out)
            os.replace(tmp, self.out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            raise
        shutil.rmtree(self.partial, ignore_errors=True)
        self.barrier()
        return True


def write_npz_streaming(path: Path, shards: Sequence[Path], stacked: Sequence[str], constants: dict[str, np.ndarray]):
    """An ``.npz`` whose arrays ``stacked`` are the shards' arrays concatenated, written shard by shard.

    Memory holds one shard at a time, whatever the total; ``constants`` are stored as they are.
    """
    shapes: dict[str, list] = {}
    dtypes: dict[str, np.dtype] = {}
    for shard in shards:  # first pass: total length, widest strings
        with np.load(shard, allow_pickle=False) as data:
            for name in stacked:
                a = data[name]
                if name not in shapes:
                    shapes[name], dtypes[name] = [0, *a.shape[1:]], a.dtype
                shapes[name][0] += a.shape[0]
                dtypes[name] = np.promote_types(dtypes[name], a.dtype)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in stacked:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                header = {"descr": np.lib.format.dtype_to_descr(dtypes[name]), "fortran_order": False}
                np.lib.format.write_array_header_2_0(fh, {**header, "shape": tuple(shapes[name])})
                for shard in shards:
                    with np.load(shard, allow_pickle=False) as data:
                        fh.write(np.ascontiguousarray(data[name].astype(dtypes[name])).tobytes())
        for name, value in constants.items():
            with zf.open(f"{name}.npy", "w") as fh:
                np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)


def relaunch_with_jobs(argv: Sequence[str], jobs: int) -> int:
    """Run this command again in ``jobs`` processes under ``torchrun`` (one machine); its exit code."""
    from torch.distributed.run import get_args_parser, run

    def torchrun(arguments: list[str]) -> None:
        parser = get_args_parser()
        parser.allow_abbrev = False  # nesf's options (e.g. sample's --n) are not torchrun's abbreviated ones
        run(parser.parse_args(arguments))

    args = list(argv)
    while "--jobs" in args:
        i = args.index("--jobs")
        del args[i : i + 2]
    args = [a for a in args if not a.startswith("--jobs=")]
    # torchrun sets one OpenMP thread per process and warns that it did so; the processes set their own
    # thread count from --threads, so set torchrun's default here and spare the user the warning
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        torchrun(["--standalone", f"--nproc-per-node={jobs}", "-m", "nesf", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # a child's failure is reported by torchrun as ChildFailedError
        print(f"nesf: error: one of the {jobs} processes failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "DEFAULT_CHUNK",
    "ChunkedRun",
    "chunked",
    "input_signature",
    "process_rank",
    "relaunch_with_jobs",
    "write_npz_streaming",
]
