"""Training: determinism, exact resume, checkpoints, refusal of bad checkpoints, DDP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from nesf.api import NeSF
from nesf.data.crystal import Crystal
from nesf.errors import CheckpointError, UnknownElementError
from nesf.io.writers import write_extxyz
from nesf.training.checkpoint import load_checkpoint
from nesf.training.loop import Trainer
from small_model import small_configs


@pytest.fixture(scope="module")
def tiny(classic):
    small = [c for c in classic if c.n_atoms <= 12]
    return small[:10], small[7:10]  # validation elements must be training elements


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("frame,norm,act", [("periodic", "none", "silu"), ("paper", "batch", "relu")])
def test_training_is_deterministic_and_learns(tmp_path, tiny, frame, norm, act):
    train, val = tiny
    m, t = small_configs(frame, norm, act)
    r1 = Trainer(train, val, tmp_path / "a", m, t, seed=3, progress=False)
    h1 = r1.run(epochs=3).history
    r2 = Trainer(train, val, tmp_path / "b", m, t, seed=3, progress=False)
    h2 = r2.run(epochs=3).history
    assert [h["train_loss"] for h in h1] == [h["train_loss"] for h in h2]
    assert_same(params_of(r1.model), params_of(r2.model))
    assert h1[-1]["train_loss"] < h1[0]["train_loss"]
    for name in ("last.pt", "best.pt", "history.csv", "learning_curve.png"):
        assert (tmp_path / "a" / name).is_file()
    r3 = Trainer(train, val, tmp_path / "c", m, t, seed=4, progress=False)
    r3.run(epochs=1)
    assert not torch.equal(params_of(r3.model)["encoder.head.0.weight"], params_of(r1.model)["encoder.head.0.weight"])


def _one_epoch(tiny, out, train_cfg) -> dict:  # noqa: ANN001
    """The history row of one epoch of the small model on ``tiny`` with ``train_cfg`` (seed 3)."""
    train, val = tiny
    return Trainer(train, val, out, small_configs()[0], train_cfg, seed=3, progress=False).run(epochs=1).history[-1]


def test_label_smoothing_is_applied_to_the_species_loss_and_checked(tmp_path, tiny):
    from nesf.models.config import TrainConfig

    t = small_configs()[1]
    plain = _one_epoch(tiny, tmp_path / "a", t)
    smooth = _one_epoch(tiny, tmp_path / "b", replace(t, label_smoothing=0.2))
    assert smooth["train_species"] != plain["train_species"]
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)


def test_huber_position_loss_weighs_large_residuals_less_and_is_checked(tmp_path, tiny):
    from nesf.models.config import TrainConfig

    t = small_configs()[1]
    plain = _one_epoch(tiny, tmp_path / "a", t)
    # a threshold far above every residual is the squared error itself
    same = _one_epoch(tiny, tmp_path / "b", replace(t, position_huber=100.0))
    assert same["train_position"] == pytest.approx(plain["train_position"], rel=1e-5)
    huber = _one_epoch(tiny, tmp_path / "c", replace(t, position_huber=0.05))
    assert huber["val_position"] < plain["val_position"]
    with pytest.raises(ValueError, match="position_huber"):
        TrainConfig(position_huber=-0.1)


def test_latent_noise_jitters_training_codes_only_and_is_checked(tmp_path, tiny):
    from nesf.models.config import TrainConfig

    t = small_configs()[1]
    plain = _one_epoch(tiny, tmp_path / "a", t)
    noisy = _one_epoch(tiny, tmp_path / "b", replace(t, latent_noise=0.5))
    again = _one_epoch(tiny, tmp_path / "c", replace(t, latent_noise=0.5))
    assert noisy["train_loss"] != plain["train_loss"]
    assert noisy["train_loss"] == again["train_loss"]  # seeded: the same jitter at every step
    train, val = tiny
    r = Trainer(train, val, tmp_path / "d", small_configs()[0], replace(t, latent_noise=0.5), seed=3, progress=False)
    assert r.validate() == r.validate()  # validation decodes the codes as they are
    with pytest.raises(ValueError, match="latent_noise"):
        TrainConfig(latent_noise=-0.1)


def test_moving_average_of_weights_is_validated_shipped_and_resumed_exactly(tmp_path, tiny):
    train, val = tiny
    m, t = small_configs()
    t = replace(t, ema_decay=0.9)
    straight = Trainer(train, val, tmp_path / "s", m, t, seed=0, progress=False)
    straight.run(epochs=4)
    ck = load_checkpoint(tmp_path / "s" / "last.pt")
    raw = ck["training"]["raw_state_dict"]
    assert_same(raw, params_of(straight.model))
    name = "encoder.head.0.weight"
    assert not torch.equal(ck["state_dict"][name], raw[name])  # the shipped weights are the average
    first = Trainer(train, val, tmp_path / "r", m, t, seed=0, progress=False)
    first.run(epochs=2)
    resumed = Trainer(train, val, tmp_path / "r", m, t, seed=0, progress=False)
    resumed.resume_from(tmp_path / "r" / "last.pt")
    resumed.run(epochs=4)
    assert_same(params_of(resumed.model), params_of(straight.model))
    assert_same(resumed.ema, straight.ema)
    plain = Trainer(train, val, tmp_path / "p", m, replace(t, ema_decay=0.0), seed=0, progress=False)
    plain.run(epochs=1)
    with pytest.raises(ValueError, match="moving average"):
        Trainer(train, val, tmp_path / "p", m, t, seed=0, progress=False).resume_from(tmp_path / "p" / "last.pt")


def test_origin_shift_augmentation_is_seeded_and_needs_the_periodic_frame(tmp_path, tiny):
    train, val = tiny
    m, t = small_configs()
    shifted = replace(t, origin_shift=True)
    h1 = Trainer(train, val, tmp_path / "a", m, shifted, seed=1, progress=False).run(epochs=2).history
    h2 = Trainer(train, val, tmp_path / "b", m, shifted, seed=1, progress=False).run(epochs=2).history
    plain = Trainer(train, val, tmp_path / "c", m, t, seed=1, progress=False).run(epochs=2).history
    assert [h["train_loss"] for h in h1] == [h["train_loss"] for h in h2]
    assert [h["train_loss"] for h in h1] != [h["train_loss"] for h in plain]
    assert load_checkpoint(tmp_path / "a" / "last.pt")["train_config"]["origin_shift"] is True
    mp_, tp = small_configs("paper", "batch")
    with pytest.raises(ValueError, match="periodic frame"):
        Trainer(train, val, tmp_path / "d", mp_, replace(tp, origin_shift=True), seed=1, progress=False)


def test_resume_continues_exactly(tmp_path, tiny):
    train, val = tiny
    m, t = small_configs()
    straight = Trainer(train, val, tmp_path / "s", m, t, seed=0, progress=False)
    straight.run(epochs=3)
    first = Trainer(train, val, tmp_path / "r", m, t, seed=0, progress=False)
    first.run(epochs=1)
    second = Trainer(train, val, tmp_path / "r", m, t, seed=0, progress=False)
    second.resume_from(tmp_path / "r" / "last.pt")
    assert second.epoch == 1
    second.run(epochs=3)
    assert_same(params_of(straight.model), params_of(second.model))
    assert len(second.history) == 3


def test_fine_tuning_run_resumes_with_its_own_settings(tmp_path, tiny):
    """A run started from another checkpoint, with all species and its own learning rate, resumes without them."""
    train, val = tiny
    m, t = small_configs()
    Trainer(train, val, tmp_path / "base", replace(m, latent_dim=24), t, seed=0, progress=False).run(epochs=1)
    base = tmp_path / "base" / "last.pt"
    tuned_cfg = replace(t, lr=t.lr / 3, batch_size=4)
    straight = Trainer(train, val, tmp_path / "s", m, tuned_cfg, seed=2, progress=False, init=base, vocab="all")
    straight.run(epochs=2)
    first = Trainer(train, val, tmp_path / "r", m, tuned_cfg, seed=2, progress=False, init=base, vocab="all")
    first.run(epochs=1)
    # what `nesf train --resume` passes: the preset's configurations and the default vocabulary
    second = Trainer(train, val, tmp_path / "r", m, t, seed=2, progress=False, resume=tmp_path / "r" / "last.pt")
    assert second.model_cfg.latent_dim == 24 and second.cfg.lr == tuned_cfg.lr and second.cfg.batch_size == 4
    assert len(second.vocab) == len(straight.vocab) > len({n for c in train for n in c.numbers})
    second.run(epochs=2)
    assert_same(params_of(straight.model), params_of(second.model))


def test_encoder_only_training_leaves_decoders_and_lattice_heads_as_they_were(tmp_path, tiny):
    """``train_only="encoder"``: only the encoder moves, from the initial model's weights; resumed as it ran."""
    train, val = tiny
    m, t = small_configs()
    Trainer(train, val, tmp_path / "base", m, t, seed=0, progress=False).run(epochs=1)
    base = load_checkpoint(tmp_path / "base" / "last.pt")["state_dict"]
    enc_cfg = replace(t, train_only="encoder")
    run = Trainer(train, val, tmp_path / "e", m, enc_cfg, seed=2, progress=False, init=tmp_path / "base" / "last.pt")
    run.run(epochs=2)
    after = params_of(run.model)
    moved = {k.split(".")[0] for k in base if not torch.equal(base[k], after[k])}
    assert moved == {"encoder"}
    assert {p.requires_grad for n, p in run.model.named_parameters() if not n.startswith("encoder.")} == {False}
    shipped = load_checkpoint(tmp_path / "e" / "last.pt")
    assert shipped["train_config"]["train_only"] == "encoder"
    resumed = Trainer(train, val, tmp_path / "e", m, t, seed=2, progress=False, resume=tmp_path / "e" / "last.pt")
    assert resumed.cfg.train_only == "encoder"
    with pytest.raises(ValueError, match="train_only"):
        replace(t, train_only="decoder")


def test_resume_refuses_options_that_would_change_the_run(tmp_path, tiny, capsys):
    from nesf.cli import main

    train, val = tiny
    m, t = small_configs()
    Trainer(train, val, tmp_path / "r", m, t, seed=0, progress=False).run(epochs=1)
    files = []
    for name, crystals in (("train", train), ("val", val)):
        files.append(tmp_path / f"{name}.extxyz")
        write_extxyz(files[-1], crystals)
    argv = ["train", "--train", str(files[0]), "--val", str(files[1]), "--out", str(tmp_path / "r"), "--resume"]
    assert main([*argv, "--lr", "1e-3", "--batch-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "--resume continues the run" in err and "--batch-size, --lr" in err
    fresh = ["train", "--train", str(files[0]), "--val", str(files[1]), "--out", str(tmp_path / "x")]
    assert main([*fresh, "--train-only", "encoder"]) == 2
    assert "give --init" in capsys.readouterr().err


def test_checkpoint_contents_and_api_round_trip(tmp_path, tiny):
    train, val = tiny
    m, t = small_configs()
    trainer = Trainer(train, val, tmp_path, m, t, seed=0, progress=False)
    trainer.run(epochs=1)
    ck = load_checkpoint(tmp_path / "best.pt")
    for key in ("format", "format_version", "nesf_version", "model_config", "train_config", "vocab", "state_dict"):
        assert key in ck
    assert "lattice_mean" in ck["state_dict"] and ck["frame"] == "periodic"
    model = NeSF.load(tmp_path / "best.pt")
    z = model.encode([c.to_pymatgen() for c in val])
    assert z.shape == (len(val), 16)
    z2 = model.encode([c.to_ase() for c in val])
    assert abs(z - z2).max() < 1e-4
    out = model.decode(z[:2])
    assert len(out) == 2
    assert all(hasattr(s, "lattice") for s in out)
    bad = Crystal(val[0].lattice, val[0].cart, [92] * val[0].n_atoms, id="uranium-thing")
    with pytest.raises(UnknownElementError, match="U"):
        model.encode([bad])


def test_bad_checkpoints_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError, match="corrupted|not a readable"):
        NeSF.load(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an nesf checkpoint"):
        NeSF.load(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "nesf-checkpoint", "obj": Path("/etc")}, pickled)
    with pytest.raises(CheckpointError, match="refused|weights_only"):
        NeSF.load(pickled)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        NeSF.load(tmp_path / "missing.pt")


def test_cli_refuses_bad_checkpoint_and_unknown_element(tmp_path, tiny, capsys):
    from nesf.cli import main

    train, val = tiny
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    data = tmp_path / "v.extxyz"
    write_extxyz(data, val)
    assert main(["evaluate", "--model", str(junk), str(data), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "junk.pt" in err and "Traceback" not in err
    m, t = small_configs()
    Trainer(train, val, tmp_path / "run", m, t, seed=0, progress=False).run(epochs=1)
    bad = tmp_path / "bad.extxyz"
    write_extxyz(bad, [Crystal(val[0].lattice, val[0].cart, [92] * val[0].n_atoms, id="with-uranium")])
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best.pt"), str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "element U" in err and "with-uranium" in err


# ---------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, train, val, paper: bool) -> None:  # noqa: ANN001
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
        }
    )
    torch.set_num_threads(1)
    m, t = small_configs("paper", "batch", "relu") if paper else small_configs()
    trainer = Trainer(train, val, out, m, t, seed=0, progress=False)
    trainer.run(epochs=2)
    torch.save({k: v for k, v in trainer.model.state_dict().items()}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("paper", [False, True], ids=["default-design", "paper-batchnorm-relu"])
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, tiny, paper):
    """Also for the published BatchNorm + ReLU decoders."""
    train, val = tiny
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), train, val, paper), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    if paper:  # BatchNorm running statistics are each process's own (DDP); rank 0's are saved
        stats = [k for k in w0 if "running_" in k or "num_batches" in k]
        assert stats and not all(torch.equal(w0[k], w1[k]) for k in stats)
        w0, w1 = ({k: v for k, v in w.items() if k not in stats} for w in (w0, w1))
    assert_same(w0, w1)
    assert (tmp_path / "last.pt").is_file()
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["training"]["global_step"] == 2 * 2  # 10 crystals / (4 per rank * 2 ranks) -> 2 steps/epoch


def test_torchrun_cli_trains_with_two_processes(tmp_path, tiny):
    train, val = tiny
    write_extxyz(tmp_path / "train.extxyz", train)
    write_extxyz(tmp_path / "val.extxyz", val)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "nesf",
        "train",
        "--train",
        str(tmp_path / "train.extxyz"),
        "--val",
        str(tmp_path / "val.extxyz"),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--quiet",
        "--probe",
        "0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "last.pt").is_file()
    assert proc.stdout.count("trained 1 epoch") == 1  # only rank 0 reports


def test_minutes_budget_stops_and_writes_checkpoint(tmp_path, tiny):
    train, val = tiny
    m, t = small_configs()
    t = replace(t, batch_size=2)
    trainer = Trainer(train, val, tmp_path, m, t, seed=0, progress=False)
    result = trainer.run(epochs=1000, minutes=0.002)
    assert result.epochs < 1000
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()


def test_interrupted_run_saves_and_resumes(tmp_path, tiny, monkeypatch):
    """Ctrl-C in the middle of an epoch writes last.pt; --resume then ends where a straight run ends."""
    train, val = tiny
    m, t = small_configs()
    straight = Trainer(train, val, tmp_path / "s", m, t, seed=1, progress=False)
    straight.run(epochs=2)
    victim = Trainer(train, val, tmp_path / "r", m, t, seed=1, progress=False)
    real_step = victim.train_step
    calls = {"n": 0}

    def flaky(index):
        calls["n"] += 1
        if calls["n"] == 4:  # inside the second epoch (3 steps per epoch)
            raise KeyboardInterrupt
        return real_step(index)

    monkeypatch.setattr(victim, "train_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        victim.run(epochs=2)
    ck = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ck["training"]["global_step"] == 3
    resumed = Trainer(train, val, tmp_path / "r", m, t, seed=1, progress=False)
    resumed.resume_from(tmp_path / "r" / "last.pt")
    resumed.run(epochs=2)
    assert_same(params_of(straight.model), params_of(resumed.model))
