"""Training throughput: query points per second of a full training step.

Paper preset (published architecture and sampling), lim_l6 training crystals, batch 64.
A step = query sampling + exact targets + forward + backward + Adam update. FLOPs of the
step are counted with torch's FlopCounterMode; GFLOP/s is that count over the step time.

    python benchmarks/train_throughput.py [--json OUT.json] [--steps 8] [--preset paper]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import append_result, data_dir, write_json
from torch.utils.flop_counter import FlopCounterMode

from nesf.data.readers import read_crystals
from nesf.models.config import get_preset
from nesf.training.loop import Trainer

OFFICIAL_QPS = 27_000  # official implementation, same machine and setting (issue statement)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--preset", default="paper", choices=("paper", "default"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = data_dir() / "nesf_paper" / "lim_l6"
    train = read_crystals(root / "train.extxyz")
    val = read_crystals(root / "val.extxyz")[:64]
    model_cfg, train_cfg = get_preset(args.preset)
    trainer = Trainer(train, val, "/tmp/nesf-throughput", model_cfg, train_cfg, seed=0, progress=False)
    batches = trainer._epoch_batches(0)
    trainer.train_step(batches[0])  # warm-up
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(batches[1])
    flops_probe = counter.get_total_flops()
    # the probe step's query counts, to scale FLOPs to other steps
    times, pos_q, spec_q = [], [], []
    for i in range(args.steps):
        index = batches[2 + i]
        batch = trainer.train_data.select(index)
        s = trainer.sampler.sample(batch, trainer._step_generator(10_000 + i))
        pos_q.append(s.pos_points.shape[0])
        spec_q.append(s.spec_points.shape[0])
        t0 = time.perf_counter()
        trainer.train_step(index)
        times.append(time.perf_counter() - t0)
    total_t = sum(times)
    pq = sum(pos_q) / total_t
    sq = sum(spec_q) / total_t
    probe_batch = trainer.train_data.select(batches[1])
    probe = trainer.sampler.sample(probe_batch, trainer._step_generator(1))
    probe_q = probe.pos_points.shape[0] + probe.spec_points.shape[0]
    flops_per_query = flops_probe / probe_q
    gflops = flops_per_query * (sum(pos_q) + sum(spec_q)) / total_t / 1e9
    result = {
        "preset": args.preset,
        "batch_size": train_cfg.batch_size,
        "steps": args.steps,
        "seconds_per_step_median": statistics.median(times),
        "position_queries_per_step": sum(pos_q) / args.steps,
        "species_queries_per_step": sum(spec_q) / args.steps,
        "position_queries_per_s": pq,
        "species_queries_per_s": sq,
        "queries_per_s": pq + sq,
        "speedup_vs_official": (pq + sq) / OFFICIAL_QPS,
        "gflops": gflops,
        "threads": args.threads,
    }
    write_json(args.json, result)
    if not args.no_record:
        append_result(
            f"Training throughput, {args.preset} preset, lim_l6, batch {train_cfg.batch_size}",
            [
                f"- {result['seconds_per_step_median']:.2f} s/step (median of {args.steps}); "
                f"{result['position_queries_per_step']:,.0f} position + {result['species_queries_per_step']:,.0f} "
                f"species queries per step",
                f"- {pq:,.0f} position + {sq:,.0f} species = {pq + sq:,.0f} queries/s "
                f"({result['speedup_vs_official']:.1f}x the official 27k queries/s); {gflops:.0f} GFLOP/s achieved",
            ],
        )


if __name__ == "__main__":
    main()
