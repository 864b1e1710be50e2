"""Record decoding defaults chosen on validation data in a shipped model's checkpoint (weights unchanged).

    python benchmarks/set_decoding.py src/nesf/weights/mp.pt symmetrize=1 --evidence "TEXT"

Writes the checkpoint's ``decoding`` record (fields of
:class:`~nesf.reconstruction.settings.ReconstructionSettings` that :meth:`nesf.api.NeSF.from_checkpoint`
applies on load) and ``decoding_evidence`` in its card, then saves it again: the model's SHA-256
(weights and configuration) stays, so its prior and property heads still match; the file's changes.
"""

from __future__ import annotations

import argparse

from _common import parse_changes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("changes", help="field=value,... of ReconstructionSettings")
    ap.add_argument("--evidence", required=True, help="where the choice comes from (a RESULTS.md entry)")
    args = ap.parse_args()

    from nesf.api import NEURAL_SETTINGS, NeSF
    from nesf.training.checkpoint import load_checkpoint, save_checkpoint

    _, changes = parse_changes("x:" + args.changes, NEURAL_SETTINGS.to_dict())
    ck = load_checkpoint(args.checkpoint)
    before = ck["sha256"]
    ck["decoding"] = changes
    ck["model_card"] = {**ck.get("model_card", {}), "decoding_evidence": args.evidence}
    payload = {k: v for k, v in ck.items() if k not in ("sha256", "file_sha256", "format", "format_version")}
    save_checkpoint(args.checkpoint, payload)
    after = load_checkpoint(args.checkpoint)["sha256"]
    assert after == before, "the model's SHA-256 changed"
    print(f"{args.checkpoint}: decoding {changes}; settings now {NeSF.load(args.checkpoint).settings.to_dict()}")


if __name__ == "__main__":
    main()
