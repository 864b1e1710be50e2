"""Record decoding and refinement defaults chosen on validation data in a shipped checkpoint (weights unchanged).

    python benchmarks/set_decoding.py src/nesf/weights/mp.pt symmetrize=1 --evidence "TEXT"
    python benchmarks/set_decoding.py src/nesf/weights/mp.pt --refinement steps=20,lr=0.045 --evidence "TEXT"
    python benchmarks/set_decoding.py src/nesf/weights/carbon_24.pt --sampling symmetrize=1 --evidence "TEXT"

Writes the checkpoint's ``decoding`` record (fields of
:class:`~nesf.reconstruction.settings.ReconstructionSettings` that :meth:`nesf.api.NeSF.from_checkpoint`
applies on load; replaced whole when given) and with ``--refinement`` its ``refinement`` record
(fields of :class:`~nesf.encoding.refine.RefineSettings`; replaced whole), with ``--sampling`` its
``sampling`` record (decoding fields :meth:`nesf.api.NeSF.for_sampling` applies to prior samples;
replaced whole), the evidence in its
card, then saves it again: the model's SHA-256 (weights and configuration) stays, so its prior
and property heads still match; the file's changes.
"""

from __future__ import annotations

import argparse

from _common import parse_changes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("changes", nargs="?", default=None, help="field=value,... of ReconstructionSettings")
    ap.add_argument("--refinement", default=None, help="field=value,... of RefineSettings")
    ap.add_argument("--sampling", default=None, help="field=value,... of ReconstructionSettings for prior samples")
    ap.add_argument("--evidence", required=True, help="where the choice comes from (a RESULTS.md entry)")
    args = ap.parse_args()

    from nesf.api import NEURAL_SETTINGS, NeSF
    from nesf.encoding.refine import RefineSettings
    from nesf.training.checkpoint import load_checkpoint, save_checkpoint

    if args.changes is None and args.refinement is None and args.sampling is None:
        ap.error("give decoding changes, --refinement, --sampling, or several")
    ck = load_checkpoint(args.checkpoint)
    before = ck["sha256"]
    card = dict(ck.get("model_card", {}))
    if args.changes is not None:
        ck["decoding"] = parse_changes("x:" + args.changes, NEURAL_SETTINGS.to_dict())[1]
        card["decoding_evidence"] = args.evidence
    if args.refinement is not None:
        ck["refinement"] = parse_changes("x:" + args.refinement, RefineSettings().to_dict())[1]
        card["refinement_evidence"] = args.evidence
    if args.sampling is not None:
        ck["sampling"] = parse_changes("x:" + args.sampling, NEURAL_SETTINGS.to_dict())[1]
        card["sampling_evidence"] = args.evidence
    ck["model_card"] = card
    payload = {k: v for k, v in ck.items() if k not in ("sha256", "file_sha256", "format", "format_version")}
    save_checkpoint(args.checkpoint, payload)
    after = load_checkpoint(args.checkpoint)["sha256"]
    assert after == before, "the model's SHA-256 changed"
    model = NeSF.load(args.checkpoint)
    print(f"{args.checkpoint}: settings now {model.settings.to_dict()}; refinement {model.refinement.to_dict()}")
    print(f"prior samples decode with {model.for_sampling().settings.to_dict()}")


if __name__ == "__main__":
    main()
