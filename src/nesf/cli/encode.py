"""``nesf encode``, ``decode``, ``interpolate`` and ``plot-field``: the latent codes and fields of crystals."""

from __future__ import annotations

import argparse
from pathlib import Path

from nesf import DEFAULT_MODEL
from nesf.cli.common import (
    add_model_options,
    add_stream_options,
    check_outputs,
    load_model,
    say_no_atoms,
    write_structures,
)


def add_encode(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf encode``."""
    p = sub.add_parser(
        "encode",
        help="latent codes of crystals to an .npz",
        description="Encode every crystal of DATA to its latent code; write OUT.npz with arrays 'latents' [B, D], "
        "'ids', 'model' and 'model_sha256' (the model that wrote them; decode refuses another model's codes).",
    )
    add_model_options(p, decoding=False, default=DEFAULT_MODEL)
    p.add_argument("data", help="crystals to encode (read lazily: extxyz frame by frame, CSV row by row)")
    p.add_argument("--out", required=True, help="output .npz (arrays 'latents', 'ids', 'model', 'model_sha256')")
    add_stream_options(p)
    p.set_defaults(func=cmd_encode)


def add_decode(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf decode``."""
    p = sub.add_parser(
        "decode",
        help="crystals from latent codes (.npz from encode)",
        description="Decode latent codes (an .npz written by 'nesf encode', or any .npz with a 'latents' array "
        "[B, D]) to crystals; write one CIF each and all.extxyz to OUT (canonical cells for canonical models).",
    )
    add_model_options(p, encoding=False, default=DEFAULT_MODEL, reading=False)
    p.add_argument("latents", help=".npz with a 'latents' array [B, D] (and optional 'ids')")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.set_defaults(func=cmd_decode)


def add_plot_field(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf plot-field``."""
    p = sub.add_parser(
        "plot-field",
        help="picture of a slice of a crystal's learned structure field",
        description="Draw the learned position field (arrows) coloured by the species field on one lattice plane "
        "of a crystal's cell (its canonical cell for canonical models); PNG, SVG, PDF or JPEG by the extension.",
    )
    add_model_options(p, default=DEFAULT_MODEL)
    p.add_argument("crystal", help="file holding the crystal (the first one, or --index)")
    p.add_argument("--index", type=int, default=0, help="which crystal of the file (default 0)")
    p.add_argument("--plane", default="z=0.5", help="lattice plane AXIS=FRACTION, axes a/b/c or x/y/z (default z=0.5)")
    p.add_argument("--out", required=True, help="output picture (.png, .svg, .pdf or .jpg)")
    p.set_defaults(func=cmd_plot_field)


def add_interpolate(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf interpolate``."""
    p = sub.add_parser(
        "interpolate",
        help="decode crystals along the latent path between two crystals",
        description="Encode crystals A and B, decode STEPS crystals along the straight line between their latent "
        "codes, and write their CIFs, all.extxyz and interpolation.png to OUT.",
    )
    add_model_options(p, default=DEFAULT_MODEL)
    p.add_argument("a", help="first crystal (first of the file)")
    p.add_argument("b", help="second crystal (first of the file)")
    p.add_argument("--steps", type=int, default=7, help="crystals along the path, ends included (default 7)")
    p.add_argument("--out", required=True, help="output folder (CIFs, all.extxyz, interpolation.png)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.set_defaults(func=cmd_interpolate)


def cmd_encode(args: argparse.Namespace) -> int:
    """Latent codes of crystals to an .npz (arrays 'latents', 'ids', 'model', 'model_sha256'), chunk by chunk."""
    import numpy as np
    from tqdm.auto import tqdm

    from nesf.data.readers import iter_crystals
    from nesf.io.stream import ChunkedRun, input_signature, process_rank, relaunch_with_jobs, write_npz_streaming

    if args.jobs > 1 and process_rank()[1] == 1:
        return relaunch_with_jobs(args.argv, args.jobs)
    if Path(args.out).suffix.lower() != ".npz":
        raise ValueError(f"--out {args.out}: latent codes are written as a NumPy .npz file; name it OUT.npz")
    check_outputs(args, folder=False)
    model = load_model(args)
    sha = str(model.info.get("sha256") or "")
    manifest = {
        "command": "encode",
        "model": str(args.model),
        "model_sha256": sha,
        "inputs": input_signature([args.data]),
        "conventional": bool(args.conventional),
        "refinement": model.refinement.to_dict() if hasattr(model, "refinement") else None,
    }
    run = ChunkedRun(args.out, manifest, resume=args.resume, chunk_size=args.chunk_size)
    bar = tqdm(desc="encode", unit="crystal", disable=args.quiet or run.rank != 0)
    for k, chunk in run.chunks(iter_crystals(args.data, conventional=args.conventional)):
        crystals = model.prepare(chunk)
        z = model.encode_crystals(crystals).cpu().numpy()
        run.save(k, latents=z, ids=np.array([c.id for c in crystals], dtype=str))
        bar.update(len(chunk) * run.world)
    bar.close()
    total = []

    def merge(shards: list[Path], tmp: Path) -> None:
        constants = {"model": np.array(str(args.model)), "model_sha256": np.array(sha)}
        write_npz_streaming(tmp, shards, ["latents", "ids"], constants)
        with np.load(tmp, allow_pickle=False) as data:
            total.append(data["latents"].shape)

    if run.finish(merge):
        resumed = f" ({run.resumed_chunks} of {run.n_chunks} chunks from the run resumed)" if run.resumed_chunks else ""
        print(f"wrote {total[0][0]} latent codes of size {total[0][1]} to {args.out}{resumed}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Crystals from latent codes of an .npz (as written by encode)."""
    import numpy as np

    from nesf.errors import NesfError
    from nesf.io.writers import staged_folder

    check_outputs(args)
    model = load_model(args)
    if not Path(args.latents).is_file():
        raise NesfError(f"{args.latents}: no such file")
    if Path(args.latents).read_bytes()[:4] != b"PK\x03\x04":
        raise NesfError(f"{args.latents}: not a latents file (expected an .npz written by 'nesf encode')")
    try:
        with np.load(args.latents, allow_pickle=False) as data:
            z = data["latents"]
            ids = [str(i) for i in data["ids"]] if "ids" in data.files else None
            writer = (str(data["model"]), str(data["model_sha256"])) if "model_sha256" in data.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise NesfError(f"{args.latents}: not a latents file written by 'nesf encode' ({exc})") from None
    this = str(model.info.get("sha256") or "")
    if writer is not None and writer[1] and writer[1] != this:
        raise NesfError(
            f"{args.latents}: these latent codes were written by model {writer[0]!r} (SHA-256 {writer[1][:12]}), "
            f"not by {args.model!r} ({this[:12]}); another model's codes decode to nonsense: use --model {writer[0]}"
        )
    pred = model.decode_crystals(z, ids=ids, progress=not args.quiet)
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        empty = write_structures(tmp, pred)
    say_no_atoms(empty)
    print(f"wrote {len(pred) - len(empty)} decoded crystal(s) to {args.out} (CIFs and all.extxyz)")
    return 0


def cmd_plot_field(args: argparse.Namespace) -> int:
    """Slice of a crystal's learned position field, coloured by its species field."""
    from nesf.data.readers import read_crystals
    from nesf.viz.plots import figure_format, parse_plane, plot_field

    plane = parse_plane(args.plane)
    model = load_model(args)
    if not hasattr(model.model, "bind"):
        raise ValueError(f"{args.model}: plot-field draws a learned structure field; this is a voxel autoencoder")
    crystal = model.prepare(read_crystals(args.crystal, conventional=args.conventional)[args.index : args.index + 1])
    if not crystal:
        raise ValueError(f"{args.crystal}: no crystal at index {args.index}")
    figure_format(args.out)  # refuse an unknown picture format before the work
    field, seen = model.field_of(crystal[0])
    plot_field(field, seen, model.vocab.symbols, args.out, plane)
    print(f"wrote {args.out}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """Decode crystals along the straight latent path from A to B."""
    import numpy as np

    from nesf.data.readers import read_crystals
    from nesf.io.writers import staged_folder
    from nesf.viz.plots import plot_strip

    if args.steps < 2:
        raise ValueError("--steps must be at least 2")
    check_outputs(args)
    model = load_model(args)
    a = model.prepare(read_crystals(args.a, conventional=args.conventional)[:1])
    b = model.prepare(read_crystals(args.b, conventional=args.conventional)[:1])
    z = model.encode_crystals(a + b).cpu().numpy()
    t = np.linspace(0.0, 1.0, args.steps)[:, None]
    path = (1 - t) * z[0] + t * z[1]
    ids = [f"step{k:02d}" for k in range(args.steps)]
    decoded = model.decode_crystals(path, ids=ids, progress=not args.quiet)
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        say_no_atoms(write_structures(tmp, decoded))
        plot_strip(decoded, tmp / "interpolation.png", title=f"latent path {a[0].id} -> {b[0].id}")
    print(f"wrote {len(decoded)} crystals and interpolation.png to {args.out}")
    return 0
