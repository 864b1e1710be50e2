"""Training throughput: query points per second, forward + backward, and of a full step.

Paper preset (published architecture and sampling), lim_l6 training crystals, batch 64.
``*_queries_per_s`` and ``gflops`` time forward + backward of the loss (the network's work);
``full_step_*`` time the whole step: query sampling + exact targets + forward + backward +
Adam. FLOPs of forward + backward are counted with torch's FlopCounterMode.

    python benchmarks/train_throughput.py [--json OUT.json] [--steps 8] [--preset paper]

``--no-batchnorm`` is an ablation, not the published model: the paper preset with its BatchNorm
layers removed, to measure what BatchNorm over ~10^5 queries costs per step.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import append_result, data_dir, write_json
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
    ap.add_argument("--no-batchnorm", action="store_true", help="ablation: drop the BatchNorm layers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = data_dir() / "nesf_paper" / "lim_l6"
    train = read_crystals(root / "train.extxyz")
    val = read_crystals(root / "val.extxyz")[:64]
    model_cfg, train_cfg = get_preset(args.preset)
    if args.no_batchnorm:
        model_cfg = replace(model_cfg, norm="none")
    out_dir = tempfile.mkdtemp(prefix="nesf-throughput-")
    trainer = Trainer(train, val, out_dir, model_cfg, train_cfg, seed=0, progress=False)
    batches = trainer._epoch_batches(0)
    trainer.train_step(batches[0])  # warm-up
    trainer.train_step(batches[1])
    objective = trainer.objective
    objective.train()
    fb_times, step_times, pos_q, spec_q, flops = [], [], [], [], []
    for i in range(args.steps):
        index = batches[2 + i]
        batch = trainer.train_data.select(index)
        samples = trainer.sampler.sample(batch, trainer._step_generator(10_000 + i))
        pos_q.append(samples.pos_points.shape[0])
        spec_q.append(samples.spec_points.shape[0])
        if i == 0:
            with FlopCounterMode(display=False) as counter:
                loss, _ = objective(batch, samples)
                loss.backward()
            flops.append(counter.get_total_flops())
            trainer.optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss, _ = objective(batch, samples)
        loss.backward()
        fb_times.append(time.perf_counter() - t0)
        trainer.optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        trainer.train_step(index)
        step_times.append(time.perf_counter() - t0)
    shutil.rmtree(out_dir, ignore_errors=True)
    flops_per_query = flops[0] / (pos_q[0] + spec_q[0])
    total_q = sum(pos_q) + sum(spec_q)
    fb, full = sum(fb_times), sum(step_times)
    result = {
        "preset": args.preset,
        "norm": model_cfg.norm,
        "batch_size": train_cfg.batch_size,
        "steps": args.steps,
        "position_queries_per_step": sum(pos_q) / args.steps,
        "species_queries_per_step": sum(spec_q) / args.steps,
        "seconds_forward_backward_median": statistics.median(fb_times),
        "position_queries_per_s": sum(pos_q) / fb,
        "species_queries_per_s": sum(spec_q) / fb,
        "queries_per_s": total_q / fb,
        "speedup_vs_official": total_q / fb / OFFICIAL_QPS,
        "gflops": flops_per_query * total_q / fb / 1e9,
        "gflop_per_step": flops[0] / 1e9,
        "full_step_seconds_median": statistics.median(step_times),
        "full_step_queries_per_s": total_q / full,
        "full_step_speedup_vs_official": total_q / full / OFFICIAL_QPS,
        "threads": args.threads,
    }
    pq, sq, gflops = result["position_queries_per_s"], result["species_queries_per_s"], result["gflops"]
    write_json(args.json, result)
    if not args.no_record:
        append_result(
            f"Training throughput, {args.preset} preset{' without BatchNorm (ablation)' if args.no_batchnorm else ''}, "
            f"lim_l6, batch {train_cfg.batch_size}",
            [
                f"- per step: {result['position_queries_per_step']:,.0f} position + "
                f"{result['species_queries_per_step']:,.0f} species queries, {result['gflop_per_step']:.0f} GFLOP",
                f"- forward + backward: {result['seconds_forward_backward_median']:.2f} s/step "
                f"(median of {args.steps}); "
                f"{pq:,.0f} position + {sq:,.0f} species = {pq + sq:,.0f} queries/s "
                f"({result['speedup_vs_official']:.2f}x the official 27k queries/s), {gflops:.0f} GFLOP/s achieved",
                f"- full step (sampling + targets + forward + backward + Adam): "
                f"{result['full_step_seconds_median']:.2f} s/step, {result['full_step_queries_per_s']:,.0f} queries/s "
                f"({result['full_step_speedup_vs_official']:.2f}x)",
            ],
        )


if __name__ == "__main__":
    main()
