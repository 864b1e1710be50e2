"""Package a trained model for shipping: model card + small weights, and the model-card page.

    python benchmarks/ship_model.py NAME --checkpoint RUN/last.pt --eval EVAL.json \
        --data "what it was trained on" --train-command "nesf train ..." \
        --eval-command "nesf evaluate ..." [--note TEXT ...]

Writes ``src/nesf/weights/NAME.pt`` (``nesf export`` with the card), copies the evaluation JSON
to ``benchmarks/results/shipped/NAME.json`` and regenerates ``docs/MODEL_CARDS.md`` from the
cards of every shipped model. ``python benchmarks/ship_model.py --cards-only`` does the last step alone.

``python benchmarks/ship_model.py NAME --update-eval --eval EVAL.json --eval-command "..."`` replaces
the test figures of a shipped model's card (the weights, and so the SHA-256 its prior is tied to, stay
as they are); the figures it replaces are kept as the encoder-only figures when they were measured
without latent refinement.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from _common import REPO, machine

WEIGHTS = REPO / "src" / "nesf" / "weights"
CARDS = REPO / "docs" / "MODEL_CARDS.md"
SHIPPED_RESULTS = REPO / "benchmarks" / "results" / "shipped"

METRICS = (
    ("n_structures", "crystals", "{:d}"),
    ("atom_count_error_pct", "atom-count error [%]", "{:.2f}"),
    ("position_error_actual", "position error, actual [A]", "{:.4f}"),
    ("position_error_detected", "position error, detected [A]", "{:.4f}"),
    ("species_error_actual_pct", "species error, actual [%]", "{:.2f}"),
    ("species_error_detected_pct", "species error, detected [%]", "{:.2f}"),
    ("lattice_length_mae", "lattice length MAE [A]", "{:.4f}"),
    ("lattice_angle_mae_deg", "lattice angle MAE [deg]", "{:.3f}"),
    ("match_rate_pct", "StructureMatcher match rate [%]", "{:.2f}"),
    ("rmse", "StructureMatcher RMSE", "{:.4f}"),
    ("seconds_per_structure", "seconds per crystal (evaluate)", "{:.3f}"),
)


def fmt(value, spec: str) -> str:  # noqa: ANN001
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return spec.format(int(value)) if spec == "{:d}" else spec.format(float(value))


def summary(name: str, data: str, metrics: dict) -> str:
    """One line for ``nesf models``."""
    return (
        f"trained on {data}; test: atom-count error {metrics['atom_count_error_pct']:.1f} %, "
        f"position error {metrics['position_error_actual']:.3f} A, species error "
        f"{metrics['species_error_actual_pct']:.1f} %, match rate {metrics['match_rate_pct']:.1f} %"
    )


def prior_lines(name: str, model) -> list[str]:  # noqa: ANN001
    """The model card's paragraph on the latent prior shipped with it (none: nothing)."""
    from nesf.generation.prior import load_prior
    from nesf.registry import shipped_prior_path

    path = shipped_prior_path(model.info.get("source"))
    if path is None:
        return []
    prior, ck = load_prior(path)
    card = ck.get("model_card") or {}
    model.prior(path)  # refuses a prior fitted to another version of the model
    return [
        "",
        f"Latent prior (`weights/priors/{name}.pt`, {path.stat().st_size / 1e6:.1f} MB): flow matching over "
        f"{prior.cfg.components} principal components of the codes of {card.get('n_crystals')} training crystals "
        f"({card.get('epochs')} epochs, final loss {card.get('final_loss', float('nan')):.4f}); "
        f"`nesf sample --model {name} --n N --out DIR`. Command: `{card.get('command', '')}`."
        + (
            f" Default sampling temperature {prior.cfg.temperature:g} ({card['temperature_evidence']})."
            if card.get("temperature_evidence")
            else ""
        )
        + (
            " Each sample's number of elements is drawn from the training crystals' histogram ("
            + ", ".join(f"{k + 1}: {100 * h:.1f} %" for k, h in enumerate(prior.cfg.element_counts) if h >= 5e-4)
            + f"; {card.get('element_counts_evidence', 'recorded by nesf fit-prior')})."
            if prior.cfg.element_counts
            else ""
        )
        + (
            " Each sample's number of atoms per cell is drawn from the training crystals' table of (elements, atoms) ("
            + ", ".join(f"{int(a)} atoms: {100 * h:.1f} %" for a, h in _atom_shares(prior.cfg.makeup_counts))
            + f"; {card.get('makeup_counts_evidence', 'recorded by nesf fit-prior --atom-counts')})."
            if getattr(prior.cfg, "makeup_counts", None)
            else ""
        ),
    ]


def _atom_shares(table: list) -> list[tuple[int, float]]:
    """Shares of each number of atoms in a make-up table (those of at least 0.5 %)."""
    shares: dict[int, float] = {}
    for _, atoms, share in table:
        shares[int(atoms)] = shares.get(int(atoms), 0.0) + float(share)
    return [(a, h) for a, h in sorted(shares.items()) if h >= 5e-3]


def write_cards() -> None:
    """docs/MODEL_CARDS.md from the cards stored in the shipped weights."""
    sys.path.insert(0, str(REPO / "src"))
    from nesf.api import NeSF
    from nesf.registry import available_models

    lines = [
        "# Shipped models",
        "",
        "Generated by `python benchmarks/ship_model.py --cards-only` from the model cards stored",
        'inside `src/nesf/weights/*.pt` (`NeSF.load(name).card`). Load one with `NeSF.load("name")` or',
        "`nesf evaluate --model name DATA`; nothing is downloaded.",
        "",
    ]
    for name in available_models():
        model = NeSF.load(name)
        card = model.card
        n_params = sum(p.numel() for p in model.model.parameters())
        lines += [f"## {name}", "", card.get("summary", ""), ""]
        facts = [
            ("data", card.get("data")),
            ("test data", card.get("test_data")),
            ("preset / frame", f"{card.get('preset')} / {model.frame}"),
            ("species vocabulary", f"{len(model.vocab)} elements"),
            ("parameters", f"{n_params:,}"),
            ("initialised from", card.get("init_description") or "random"),
            ("epochs / steps", f"{card.get('epochs')} / {card.get('training_steps')}"),
            ("training wall time", f"{card.get('training_seconds', 0) / 60:.1f} min"),
            (
                "cell setting",
                (
                    "canonical: the same crystal in any origin, axis order or reduced cell gives the same result"
                    + (
                        "; conventional cells and supercells are read as their primitive cell"
                        if getattr(model.model.cfg, "primitive_cell", False)
                        else ""
                    )
                )
                if model.setting == "canonical"
                else "as given: results hold for the origin and axes conventions of the training data",
            ),
            ("domain", model.domain.describe() if model.domain is not None else None),
            (
                "decoding defaults",
                ", ".join(f"{k}={v}" for k, v in model.info.get("decoding", {}).items())
                + f" ({card['decoding_evidence']})"
                if model.info.get("decoding")
                else None,
            ),
            (
                "prior samples decode with",
                ", ".join(f"{k}={v}" for k, v in model.info.get("sampling", {}).items())
                + f" ({card['sampling_evidence']})"
                if model.info.get("sampling")
                else None,
            ),
            ("machine", card.get("machine")),
            ("date", card.get("date")),
        ]
        lines += [f"- **{k}**: {v}" for k, v in facts if v is not None]
        lines += ["", "Commands:", "", "```", card.get("train_command", ""), card.get("eval_command", ""), "```", ""]
        test = card.get("test_metrics", {})
        plain = card.get("plain_encoder_metrics")
        steps = (card.get("refinement") or {}).get("steps", 0)
        restarts = (card.get("refinement") or {}).get("restarts", 0)
        if plain and steps:
            how = f"codes refined {steps} steps" + (f", checked ({restarts} restarts)" if restarts else "")
            lines += [
                f"| metric | {how} (default) | the encoder's codes (`--refine-steps 0`) |",
                "|---|---|---|",
            ]
            lines += [
                f"| {label} | {fmt(test.get(key), spec)} | {fmt(plain.get(key), spec)} |"
                for key, label, spec in METRICS
            ]
        else:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {label} | {fmt(test.get(key), spec)} |" for key, label, spec in METRICS]
        resettled = card.get("resettled_metrics")
        if resettled:
            lines += ["", "The same test crystals in other settings (`nesf evaluate --resettle`):", ""]
            lines += ["| setting | atom-count error [%] | match rate [%] |", "|---|---|---|"]
            lines.append(
                f"| as given | {fmt(test.get('atom_count_error_pct'), '{:.2f}')} | "
                f"{fmt(test.get('match_rate_pct'), '{:.2f}')} |"
            )
            names = {"origin": "random origin", "axes": "permuted axes", "niggli": "Niggli cell", "all": "all three"}
            for kind, m in resettled.items():
                lines.append(
                    f"| {names.get(kind, kind)} | {fmt(m.get('atom_count_error_pct'), '{:.2f}')} | "
                    f"{fmt(m.get('match_rate_pct'), '{:.2f}')} |"
                )
        lines += prior_lines(name, model)
        for note in card.get("notes", []):
            lines += ["", note]
        lines.append("")
    CARDS.parent.mkdir(parents=True, exist_ok=True)
    CARDS.write_text("\n".join(lines))
    print(f"wrote {CARDS}")


def write_shipped_json(name: str, metrics: dict) -> None:
    """benchmarks/results/shipped/NAME.json; local paths keep only their last three parts (the JSON is committed)."""
    for key in ("model", "data"):
        if isinstance(metrics.get(key), str) and Path(metrics[key]).is_absolute():
            metrics[key] = "/".join(Path(metrics[key]).parts[-3:])
    SHIPPED_RESULTS.mkdir(parents=True, exist_ok=True)
    (SHIPPED_RESULTS / f"{name}.json").write_text(json.dumps(metrics, indent=2) + "\n")


def _old_refinement(name: str, card: dict) -> dict:
    """How the figures on a shipped card were measured: the card's record, else its evaluation JSON's."""
    if card.get("refinement"):
        return card["refinement"]
    shipped = SHIPPED_RESULTS / f"{name}.json"
    return (json.loads(shipped.read_text()).get("refinement") or {}) if shipped.is_file() else {}


def _kept(metrics: dict) -> dict:
    return {k: metrics.get(k) for k, _, _ in METRICS}


def update_eval(
    name: str,
    eval_path: str,
    eval_command: str,
    plain_path: str | None,
    notes: list[str],
    drop: list[str],
    eval_machine: str | None = None,
) -> None:
    """New test figures on the card of shipped model ``name``; weights and SHA-256 unchanged.

    ``eval_machine`` replaces the "evaluation: ..." part of the card's machine line (appended
    when it has none), so the card says where the figures it quotes were measured.
    """
    sys.path.insert(0, str(REPO / "src"))
    from nesf.training.checkpoint import HASHED_KEYS, load_checkpoint, save_checkpoint

    path = WEIGHTS / f"{name}.pt"
    ck = load_checkpoint(path)
    card = dict(ck.get("model_card") or {})
    metrics = json.loads(Path(eval_path).read_text())
    if plain_path:
        card["plain_encoder_metrics"] = _kept(json.loads(Path(plain_path).read_text()))
    elif not _old_refinement(name, card).get("steps") and "plain_encoder_metrics" not in card:
        card["plain_encoder_metrics"] = card.get("test_metrics")  # measured before codes were refined
    card["test_metrics"] = _kept(metrics)
    card["summary"] = summary(name, card.get("data", "?"), metrics)
    card["eval_command"] = eval_command
    card["refinement"] = metrics.get("refinement")
    if metrics.get("resettled"):
        card["resettled_metrics"] = {
            kind: {k: m.get(k) for k in ("atom_count_error_pct", "match_rate_pct", "rmse")}
            for kind, m in metrics["resettled"].items()
        }
    card["notes"] = [n for n in card.get("notes", []) if not any(d in n for d in drop)] + list(notes)
    if eval_machine:
        trained = str(card.get("machine") or "").split("; evaluation:")[0]
        card["machine"] = f"{trained}; evaluation: {eval_machine}" if trained else f"evaluation: {eval_machine}"
    before = ck["sha256"]
    payload = {k: v for k, v in ck.items() if k not in ("format", "format_version", "sha256")}
    payload["model_card"] = card
    save_checkpoint(path, payload)
    after = load_checkpoint(path)["sha256"]
    if after != before:
        raise SystemExit(f"{path}: the SHA-256 changed ({before[:12]} -> {after[:12]}); hashed: {HASHED_KEYS}")
    write_shipped_json(name, metrics)
    print(f"updated the card of {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?")
    ap.add_argument("--checkpoint")
    ap.add_argument("--eval", help="nesf evaluate --json output on the test data")
    ap.add_argument("--data", help="what the model was trained on")
    ap.add_argument(
        "--train-data",
        action="append",
        help="training file(s), to record its elements and domain (if the checkpoint has not); repeatable",
    )
    ap.add_argument("--exclude", action="append", default=[], help="files whose ids were dropped from --train-data")
    ap.add_argument("--test-data", help="what it was tested on")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--init-description", help="pre-training, in words")
    ap.add_argument("--train-command", default="")
    ap.add_argument("--eval-command", default="")
    ap.add_argument("--minutes-total", type=float, help="wall time including pre-training, minutes")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--machine", help="where it was trained (default: this machine)")
    ap.add_argument("--eval-machine", help="with --update-eval: where the new test figures were measured")
    ap.add_argument("--cards-only", action="store_true")
    ap.add_argument("--update-eval", action="store_true", help="replace the test figures of shipped model NAME")
    ap.add_argument("--plain-eval", help="with --update-eval: evaluate --json of the encoder's own codes")
    ap.add_argument(
        "--drop-notes-with", action="append", default=[], help="with --update-eval: drop the notes holding this text"
    )
    args = ap.parse_args()
    if args.update_eval:
        if not (args.name and args.eval and args.eval_command):
            ap.error("--update-eval needs NAME, --eval and --eval-command")
        update_eval(
            args.name, args.eval, args.eval_command, args.plain_eval, args.note, args.drop_notes_with, args.eval_machine
        )
    elif not args.cards_only:
        if not (args.name and args.checkpoint and args.eval and args.data):
            ap.error("NAME, --checkpoint, --eval and --data are needed (or --cards-only)")
        sys.path.insert(0, str(REPO / "src"))
        from nesf.training.checkpoint import export_model

        metrics = json.loads(open(args.eval).read())
        keep = {k: metrics.get(k) for k, _, _ in METRICS}
        card = {
            "name": args.name,
            "summary": summary(args.name, args.data, metrics),
            "data": args.data,
            "test_data": args.test_data or metrics.get("data"),
            "preset": args.preset,
            "init_description": args.init_description,
            "train_command": args.train_command,
            "eval_command": args.eval_command,
            "machine": args.machine or machine(),
            "date": dt.date.today().isoformat(),
            "test_metrics": keep,
            "notes": args.note,
        }
        if args.minutes_total:
            card["training_seconds"] = round(60.0 * args.minutes_total, 1)
        WEIGHTS.mkdir(parents=True, exist_ok=True)
        if metrics.get("resettled"):
            card["resettled_metrics"] = {
                kind: {k: m.get(k) for k in ("atom_count_error_pct", "match_rate_pct", "rmse")}
                for kind, m in metrics["resettled"].items()
            }
        trained = domain = None
        if args.train_data:
            from nesf.data.domain import Domain
            from nesf.data.prepared import prepare_crystals
            from nesf.data.readers import read_crystals
            from nesf.data.vocab import SpeciesVocab
            from nesf.training.checkpoint import load_checkpoint

            crystals = [c for path in args.train_data for c in read_crystals(path)]
            drop = {c.id for path in args.exclude for c in read_crystals(path)}
            crystals = [c for c in crystals if c.id not in drop]
            trained = list(SpeciesVocab.from_crystals(crystals).numbers)
            cfg = load_checkpoint(args.checkpoint)["model_config"]
            seen = prepare_crystals(
                crystals,
                cfg["frame"],
                cfg.get("setting", "as_given"),
                cfg.get("canonical_origin", "rarest"),
                cfg.get("primitive_cell", False),
            )
            domain = Domain.from_crystals(seen).to_dict()
        out = export_model(args.checkpoint, WEIGHTS / f"{args.name}.pt", card, trained_numbers=trained, domain=domain)
        write_shipped_json(args.name, metrics)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    write_cards()


if __name__ == "__main__":
    main()
