"""Training throughput: query points per second, forward + backward, and of a full step.

Paper preset (published architecture and sampling), lim_l6 training crystals, batch 64.
``*_queries_per_s`` and ``gflops`` time forward + backward of the loss (the network's work);
rates divide all queries of the timed steps by their summed time (slow outlier steps count;
``queries_per_s_at_median_step`` is the rate of the median step), and the per-step times are
in the JSON. ``full_step_*`` time the whole step: query sampling + exact targets + forward + backward +
Adam. FLOPs of forward + backward are counted with torch's FlopCounterMode, taught the in-place
``addmm_`` that the decoders accumulate their hidden-layer products with (runs logged before
2026-11-24 12:50 UTC used the counter as shipped, which skips ``addmm_``: their GFLOP/s read ~25 % low).

    python benchmarks/train_throughput.py [--json OUT.json] [--steps 16] [--warmup 16]
    python benchmarks/train_throughput.py --processes 2      # DDP: 2 processes x 1 thread

``--processes P`` measures data-parallel training as ``torchrun --nproc-per-node P -m nesf
train --batch-size 64/P`` runs it: P processes (gloo) with ``threads / P`` threads each, each
taking 64/P crystals of the batch of 64, gradients all-reduced by DDP in the backward pass.
BatchNorm statistics are then those of each process's queries (~5 x 10^4 per layer), as
usual for DDP. A step's time is that of the slowest process.

The first ``--warmup`` steps (16) run the same work untimed, and the timed steps then revisit
their batches (with fresh query samples), as every epoch of a training run revisits its
batches: the first steps of a run grow the process heap to its working size, page-faulting
0.1-2 GB in for batches of sizes not seen before, which a run pays once, not every epoch.
The timed steps' page faults are in the JSON. ``--no-batchnorm`` is an ablation, not the
published model: the paper preset with its BatchNorm layers removed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import tempfile
import time
from dataclasses import replace

import torch
import torch.distributed as dist
from torch.utils.flop_counter import FlopCounterMode

from _common import append_result, data_dir, write_json
from nesf.data.readers import read_crystals
from nesf.models.config import get_preset
from nesf.training.loop import Trainer

# the official implementation on this machine: 7.1 s per batch-64 lim_l6 step, ~193k queries
OFFICIAL_QPS = 27_000


def _addmm_inplace_flops(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:  # noqa: ANN001, ANN003
    """FLOPs of ``self.addmm_(a, b)``, which torch's counter does not register (it counts ``addmm``)."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


FLOP_MAPPING = {torch.ops.aten.addmm_: _addmm_inplace_flops}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(rank: int, world: int, args: argparse.Namespace, result_path: str) -> None:
    """Time the steps on this process; rank 0 writes the combined result to ``result_path``."""
    if world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(max(1, args.threads // world))
    root = data_dir() / "nesf_paper" / "lim_l6"
    train = read_crystals(root / "train.extxyz")
    val = read_crystals(root / "val.extxyz")[:64]
    model_cfg, train_cfg = get_preset(args.preset)
    if args.no_batchnorm:
        model_cfg = replace(model_cfg, norm="none")
    global_batch = train_cfg.batch_size
    if global_batch % world:
        raise SystemExit(f"--processes {world} does not divide the batch of {global_batch}")
    train_cfg = replace(train_cfg, batch_size=global_batch // world)
    out_dir = tempfile.mkdtemp(prefix="nesf-throughput-")
    trainer = Trainer(train, val, out_dir, model_cfg, train_cfg, seed=0, progress=False)
    module = trainer.ddp if trainer.ddp is not None else trainer.objective
    batches = trainer._epoch_batches(0)
    warmup = max(1, args.warmup)
    trainer.objective.train()

    def barrier() -> None:
        if world > 1:
            dist.barrier()

    fb_times, step_times, pos_q, spec_q, fb_faults = [], [], [], [], []
    flops, flop_queries = 0.0, 0.0
    for i in range(warmup + args.steps):
        timed = i >= warmup
        # the timed steps revisit the warm-up's batches, as every epoch of a run does
        index = batches[((i - warmup) % warmup if timed else i) % len(batches)]
        batch = trainer.train_data.select(index)
        samples = trainer.sampler.sample(batch, trainer._step_generator(10_000 + i))
        if i == 0:
            with FlopCounterMode(display=False, custom_mapping=FLOP_MAPPING) as counter:
                loss, _ = trainer.objective(batch, samples)
                loss.backward()
            flops = float(counter.get_total_flops())
            flop_queries = float(samples.pos_points.shape[0] + samples.spec_points.shape[0])
            trainer.optimizer.zero_grad(set_to_none=True)
        barrier()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        loss, _ = module(batch, samples)
        loss.backward()
        fb_time = time.perf_counter() - t0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        trainer.optimizer.zero_grad(set_to_none=True)
        barrier()
        t0 = time.perf_counter()
        trainer.train_step(index)
        step_time = time.perf_counter() - t0
        if timed:
            fb_times.append(fb_time)
            fb_faults.append(faults)
            step_times.append(step_time)
            pos_q.append(samples.pos_points.shape[0])
            spec_q.append(samples.spec_points.shape[0])
    shutil.rmtree(out_dir, ignore_errors=True)

    # per step: the slowest process's time, the queries of all processes
    stats = torch.tensor([fb_times, step_times, pos_q, spec_q], dtype=torch.float64)
    flops_t = torch.tensor([flops, flop_queries], dtype=torch.float64)
    if world > 1:
        times = stats[:2].clone()
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        counts = stats[2:].clone()
        dist.all_reduce(counts)
        stats = torch.cat([times, counts])
        dist.all_reduce(flops_t)
        dist.destroy_process_group()
    if rank != 0:
        return
    fb_times, step_times = stats[0].tolist(), stats[1].tolist()
    pos_total, spec_total = float(stats[2].sum()), float(stats[3].sum())
    total_q = pos_total + spec_total
    flops_per_query = float(flops_t[0] / flops_t[1])
    fb, full = sum(fb_times), sum(step_times)
    result = {
        "preset": args.preset,
        "norm": model_cfg.norm,
        "batch_size": global_batch,
        "processes": world,
        "threads_per_process": torch.get_num_threads(),
        "steps": args.steps,
        "warmup_steps": warmup,
        "position_queries_per_step": pos_total / args.steps,
        "species_queries_per_step": spec_total / args.steps,
        "seconds_forward_backward_median": statistics.median(fb_times),
        "seconds_forward_backward": [round(t, 4) for t in fb_times],
        "page_faults_forward_backward_rank0": fb_faults,
        "queries_per_s_at_median_step": total_q / args.steps / statistics.median(fb_times),
        "position_queries_per_s": pos_total / fb,
        "species_queries_per_s": spec_total / fb,
        "queries_per_s": total_q / fb,
        "speedup_vs_official": total_q / fb / OFFICIAL_QPS,
        "gflops": flops_per_query * total_q / fb / 1e9,
        "gflop_per_step": flops_per_query * total_q / args.steps / 1e9,
        "full_step_seconds_median": statistics.median(step_times),
        "full_step_queries_per_s": total_q / full,
        "full_step_speedup_vs_official": total_q / full / OFFICIAL_QPS,
        "threads": args.threads,
    }
    with open(result_path, "w") as fh:
        json.dump(result, fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    ap.add_argument("--steps", type=int, default=16, help="timed steps")
    ap.add_argument("--warmup", type=int, default=16, help="untimed training steps first")
    ap.add_argument("--preset", default="paper", choices=("paper", "default"))
    ap.add_argument("--threads", type=int, default=2, help="threads in all (divided among the processes)")
    ap.add_argument("--processes", type=int, default=1, help="data-parallel processes (DDP over gloo)")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--no-batchnorm", action="store_true", help="ablation: drop the BatchNorm layers")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nesf-throughput-") as tmp:
        result_path = os.path.join(tmp, "result.json")
        if args.processes > 1:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
            torch.multiprocessing.spawn(measure, args=(args.processes, args, result_path), nprocs=args.processes)
        else:
            measure(0, 1, args, result_path)
        with open(result_path) as fh:
            result = json.load(fh)
    torch.set_num_threads(result["threads_per_process"])  # so that the RESULTS.md line names it
    pq, sq, gflops = result["position_queries_per_s"], result["species_queries_per_s"], result["gflops"]
    write_json(args.json, result)
    if not args.no_record:
        how = ""
        if args.processes > 1:
            how = f"{args.processes} processes x {result['threads_per_process']} thread(s), DDP"
        append_result(
            f"Training throughput, {args.preset} preset{' without BatchNorm (ablation)' if args.no_batchnorm else ''}, "
            f"lim_l6, batch {result['batch_size']}{', ' + how if how else ''}",
            [
                f"- per step: {result['position_queries_per_step']:,.0f} position + "
                f"{result['species_queries_per_step']:,.0f} species queries, {result['gflop_per_step']:.0f} GFLOP",
                f"- forward + backward: {result['seconds_forward_backward_median']:.2f} s/step "
                f"(median of {args.steps}, after {result['warmup_steps']} warm-up steps); "
                f"{pq:,.0f} position + {sq:,.0f} species = {pq + sq:,.0f} queries/s "
                f"({result['speedup_vs_official']:.2f}x the official 27k queries/s), {gflops:.0f} GFLOP/s achieved",
                f"- full step (sampling + targets + forward + backward + Adam): "
                f"{result['full_step_seconds_median']:.2f} s/step, {result['full_step_queries_per_s']:,.0f} queries/s "
                f"({result['full_step_speedup_vs_official']:.2f}x)",
            ],
        )


if __name__ == "__main__":
    main()
