"""``nesf train``: train a NeSF autoencoder, or the voxel baseline with ``--model voxel``."""

from __future__ import annotations

import argparse
import os
import signal
from dataclasses import replace
from pathlib import Path

from nesf.cli.common import MAX_ATOMS_HELP, non_negative_int, pick_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf train``."""
    p = sub.add_parser(
        "train",
        help="train an autoencoder",
        description="Train a NeSF autoencoder. Works under torchrun for multi-process (DDP) training.",
    )
    p.add_argument("--train", required=True, help="training crystals (extxyz, CIF(s), CSV)")
    p.add_argument("--val", required=True, help="validation crystals (checkpoint selection)")
    p.add_argument("--out", required=True, help="output folder (last.pt, best.pt, history.csv, learning_curve.png)")
    p.add_argument(
        "--model",
        choices=("nesf", "voxel"),
        default="nesf",
        help="'nesf' (default) or 'voxel': the ICSG3D-style voxel autoencoder baseline",
    )
    p.add_argument("--voxel-d", type=int, default=None, help="voxel model: grid points per axis (default 32)")
    p.add_argument(
        "--augment",
        choices=("none", "cubic", "any"),
        default=None,
        help="voxel model: random rotations of the training crystals (default: the voxel config's)",
    )
    p.add_argument(
        "--preset",
        choices=("default", "paper"),
        default="default",
        help="'paper': the published configuration; 'default': this project's (default)",
    )
    p.add_argument("--frame", choices=("paper", "periodic"), default=None, help="override the preset's frame")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (default: the preset's)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="crystals per step and process (default: the preset's; default 32, paper 64)",
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when present)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt with the run's own architecture, species classes and training settings",
    )
    p.add_argument(
        "--init",
        metavar="CKPT",
        help="start from this checkpoint's weights (fine-tuning / pre-training); its architecture is used",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="DATA",
        help="drop training crystals whose ids appear in DATA (repeatable; e.g. the test set)",
    )
    p.add_argument(
        "--add-supercells",
        type=int,
        metavar="MAX_ATOMS",
        default=None,
        help="also train on 2x2x2 supercells of training crystals that stay within MAX_ATOMS atoms",
    )
    _add_model_and_loss_options(p)
    p.add_argument("--conventional", action="store_true", help="convert crystals to conventional standard cells")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--max-atoms", type=int, default=None, help=MAX_ATOMS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _add_model_and_loss_options(p: argparse.ArgumentParser) -> None:
    """The options of ``nesf train`` that shape the network, the data it sees and its loss."""
    p.add_argument(
        "--structure-factors",
        action="store_true",
        help="periodic frame: add species-weighted structure factors (|h_i| <= 3) to the encoder",
    )
    p.add_argument(
        "--shift-origins",
        action="store_true",
        help="periodic frame: move each training crystal's origin by a random fraction of its cell "
        "at every step (augmentation; the same crystal); implies --setting as_given",
    )
    p.add_argument(
        "--vocab",
        choices=("data", "all"),
        default="data",
        help="species classes: the elements of the data (default) or all of H..Pu (accepts unseen elements)",
    )
    p.add_argument(
        "--setting",
        choices=("as_given", "canonical"),
        default=None,
        help="cells the model sees: 'canonical' (one cell and origin per crystal, whatever setting a file "
        "uses; the default preset's) or 'as_given' (the paper preset's); with --init: the initial model's "
        "unless given",
    )
    p.add_argument("--vae", action="store_true", help="a variational autoencoder (latent mean and variance)")
    p.add_argument("--kl-weight", type=float, default=None, help="weight of the VAE's KL term (default 0.001)")
    p.add_argument(
        "--latent-tokens",
        type=non_negative_int,
        default=0,
        metavar="M",
        help="split the latent code into M tokens that the encoder fills by attention over the atoms and "
        "every decoder query attends to (M must divide the latent size; default 0: one global code)",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=None,
        metavar="DECAY",
        help="validate and ship a moving average of the weights with this decay per step (e.g. 0.999; default: off)",
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        default=None,
        help="smooth the species targets by this share (e.g. 0.1; default 0: plain cross-entropy)",
    )
    p.add_argument(
        "--latent-noise",
        type=float,
        default=None,
        metavar="SIGMA",
        help="jitter each training code by Gaussian noise of SIGMA times each latent dimension's spread over "
        "the batch before decoding (e.g. 0.15; default: off), so that codes near a crystal's decode to it",
    )
    p.add_argument(
        "--position-huber",
        type=float,
        default=None,
        metavar="DELTA",
        help="position loss: Huber with this threshold in A (e.g. 0.1) instead of the squared error",
    )
    p.add_argument(
        "--primitive-cell",
        action="store_true",
        help="canonical setting: reduce every crystal to a primitive cell first, so that conventional cells and "
        "supercells are read as their primitive crystal (reconstructions come back in the input's cell)",
    )
    p.add_argument(
        "--train-only",
        choices=("all", "encoder"),
        default=None,
        help="'encoder': freeze the field decoders and lattice heads of an --init model and train its encoder "
        "alone, so that its one-pass codes come closer to refined ones (default 'all')",
    )
    p.add_argument(
        "--probe",
        type=non_negative_int,
        default=32,
        metavar="N",
        help="after training, reconstruct N validation crystals in one pass and record in the checkpoints "
        "how much test-time search the model gets by default: a model that matches fewer than 25 %% of "
        "them gets checked codes bounded to about 5x its one-pass work (--max-cost 5); 0: no probe "
        "(default 32)",
    )
    p.add_argument(
        "--latent-every-layer",
        action="store_true",
        help="feed the latent code to every hidden layer of the field decoders (a per-layer shift "
        "computed once per crystal), not only to the first",
    )


#: Options that set a run's architecture or training settings: a resumed run keeps its own.
RUN_SETTINGS = (
    "batch_size",
    "lr",
    "shift_origins",
    "kl_weight",
    "label_smoothing",
    "position_huber",
    "latent_noise",
    "train_only",
    "ema",
    "structure_factors",
    "vae",
    "latent_tokens",
    "latent_every_layer",
    "primitive_cell",
    "setting",
)


def cmd_train(args: argparse.Namespace) -> int:
    """Train an autoencoder."""
    import torch

    from nesf.data.readers import read_crystals
    from nesf.models.config import get_preset
    from nesf.training.loop import train

    if args.resume and not (Path(args.out) / "last.pt").is_file():
        raise ValueError(f"--resume: {Path(args.out) / 'last.pt'} does not exist")
    if args.resume:
        settings = [f"--{name.replace('_', '-')}" for name in RUN_SETTINGS if getattr(args, name, None)]
        if settings:
            raise ValueError(
                f"--resume continues the run with the architecture and training settings saved in "
                f"{Path(args.out) / 'last.pt'}; drop {', '.join(settings)}"
            )
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg, train_cfg = get_preset(args.preset, args.frame)
    if args.structure_factors:
        if model_cfg.frame != "periodic":
            raise ValueError("--structure-factors needs the periodic frame")
        model_cfg = replace(model_cfg, structure_factors=True)
    if args.latent_every_layer:
        model_cfg = replace(model_cfg, latent_every_layer=True)
    if args.latent_tokens:
        model_cfg = replace(model_cfg, latent_tokens=args.latent_tokens)
    if args.primitive_cell:
        model_cfg = replace(model_cfg, primitive_cell=True)
    if args.vae:
        model_cfg = replace(model_cfg, vae=True)
    if args.shift_origins and args.setting is None:
        args.setting = "as_given"  # origin shifts teach origin independence; the canonical setting fixes the origin
    if args.setting is not None:
        model_cfg = replace(model_cfg, setting=args.setting)
    changes = {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "origin_shift": args.shift_origins,
        "w_kl": args.kl_weight,
        "label_smoothing": args.label_smoothing,
        "position_huber": args.position_huber,
        "latent_noise": args.latent_noise,
        "ema_decay": args.ema,
        "train_only": args.train_only,
    }
    train_cfg = replace(train_cfg, **{k: v for k, v in changes.items() if v})
    train_set = read_crystals(args.train, conventional=args.conventional)
    val_set = read_crystals(args.val, conventional=args.conventional)
    if args.exclude:
        drop = {c.id for path in args.exclude for c in read_crystals(path)}
        kept = [c for c in train_set if c.id not in drop]
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"--exclude: dropped {len(train_set) - len(kept)} of {len(train_set)} training crystals")
        train_set = kept
    if args.resume and args.init:
        raise ValueError("--resume and --init exclude each other (resume continues OUT/last.pt)")
    if args.train_only == "encoder" and not args.init:
        raise ValueError("--train-only encoder trains the encoder of a trained model: give --init MODEL")
    if args.init and (args.structure_factors or args.vae or args.latent_tokens):
        flag = "--structure-factors" if args.structure_factors else "--vae" if args.vae else "--latent-tokens"
        raise ValueError(f"--init: the architecture is the initial model's; {flag} cannot change it")
    if args.init and args.model != "voxel":
        from nesf.registry import resolve_model_path

        args.init = str(resolve_model_path(args.init))  # a checkpoint path or a shipped model's name
    if args.add_supercells:
        extra = supercells(train_set, args.add_supercells)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"--add-supercells: added {len(extra)} 2x2x2 supercells to {len(train_set)} training crystals")
        train_set = train_set + extra
    if args.model == "voxel":
        return _train_voxel(args, train_set, val_set)

    def _terminate(signum, frame):  # noqa: ANN001, ARG001 - schedulers stop jobs with SIGTERM
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    result = train(
        train_set,
        val_set,
        args.out,
        model_cfg,
        train_cfg,
        epochs=args.epochs,
        minutes=args.minutes,
        seed=args.seed,
        device=pick_device(args.device),
        resume=args.resume,
        progress=not args.quiet,
        init=args.init,
        vocab=args.vocab,
        setting=args.setting,
        extend={k: True for k in ("latent_every_layer", "primitive_cell") if getattr(args, k)} or None,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"trained {result.epochs} epoch(s), {result.steps} steps; best validation loss {result.best_val:.5f}; "
            f"checkpoints in {result.out_dir} (last.pt, best.pt), curve in history.csv and learning_curve.png"
        )
        if args.probe:
            _probe_search(Path(result.out_dir), val_set, args.probe)
    return 0


def _probe_search(out_dir: Path, val_set, n: int) -> None:  # noqa: ANN001
    """Record each checkpoint's default test-time search from a one-pass probe of ``n`` validation crystals."""
    from nesf.encoding import calibrate

    cache: dict = {}
    for name in ("best.pt", "last.pt"):
        path = out_dir / name
        if not path.is_file():
            continue
        probed = len(cache)
        probe = calibrate.record_search_default(path, val_set, n, cache)
        reused = len(cache) == probed  # the same weights as a checkpoint probed before
        if not probe["crystals"]:
            print(f"{name}: no validation crystal of the model's elements to probe; the full search stays the default")
            continue
        bounded = probe["refinement"].get("max_cost")
        search = probe.get("search")
        if probe["refinement"] == calibrate.HOPELESS_REFINEMENT and search:
            verdict = (
                f"a search bounded to {calibrate.WEAK_REFINEMENT['max_cost']:g}x matched {search['matched']} of "
                f"{search['crystals']} ({search['matched_one_pass']} in one pass), so the encoder's own codes are "
                "the default (--max-cost 0: full search)"
            )
        elif bounded:
            verdict = (
                f"checked codes bounded to about {bounded:g}x the one-pass work by default (--max-cost 0: full search)"
            )
        else:
            verdict = "the full checked search stays the default"
        timing = "the same weights as best.pt" if reused else f"{probe['seconds']:.0f} s"
        print(
            f"{name}: one pass matched {probe['matched']} of {probe['crystals']} validation crystals "
            f"({probe['match_pct']:.0f} %, {timing}); {verdict}"
        )


def supercells(crystals, max_atoms: int) -> list:  # noqa: ANN001
    """2x2x2 supercells (ids ``ID-x2``) of the crystals whose supercell has at most ``max_atoms`` atoms.

    A physically exact augmentation: the same crystal in a cell eight times larger, for training
    sets short of large cells.
    """
    from nesf.data.crystal import Crystal

    out = []
    for c in crystals:
        if 8 * c.n_atoms <= max_atoms:
            out.append(Crystal.from_pymatgen(c.to_pymatgen() * (2, 2, 2), id=f"{c.id}-x2"))
    return out


def _train_voxel(args: argparse.Namespace, train_set, val_set) -> int:  # noqa: ANN001
    """``nesf train --model voxel``: the ICSG3D-style voxel autoencoder baseline."""
    from nesf.voxel import VoxelConfig, train_voxel

    for flag, value in (
        ("--init", args.init),
        ("--frame", args.frame),
        ("--structure-factors", args.structure_factors),
        ("--shift-origins", args.shift_origins),
    ):
        if value:
            raise ValueError(f"{flag} applies to NeSF models, not to --model voxel")
    if args.preset != "default":
        raise ValueError("--preset applies to NeSF models, not to --model voxel")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--model voxel trains in one process; run it without torchrun")
    over = {"d": args.voxel_d, "batch_size": args.batch_size, "lr": args.lr, "augment": args.augment}
    cfg = VoxelConfig(**{k: v for k, v in over.items() if v is not None})
    result = train_voxel(
        train_set,
        val_set,
        args.out,
        cfg,
        epochs=args.epochs,
        minutes=args.minutes,
        seed=args.seed,
        device=pick_device(args.device),
        progress=not args.quiet,
        resume=args.resume,
        vocab=args.vocab,
    )
    print(
        f"trained {result.epochs} epoch(s), {result.steps} steps; best validation loss {result.best_val:.5f}; "
        f"checkpoints in {result.out_dir} (last.pt, best.pt), curve in history.csv and learning_curve.png"
    )
    return 0
