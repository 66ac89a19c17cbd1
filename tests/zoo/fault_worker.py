"""A tiny training run that tests/zoo/test_faults.py kills, starves or leaves holding its folder.

The faults are injected here, by patching the worker's own process; the library has no hook
for them.

    python fault_worker.py OUT kill STEP PHASE   # SIGKILL itself at step STEP, in PHASE:
        # "step": after the step's update; "fsync": with the checkpoint's temporary file
        # written, before its fsync; "replace": fsynced, before the rename over checkpoint.pt
    python fault_worker.py OUT hold              # take the folder, print "ready", wait
    python fault_worker.py OUT quota STEP BYTES  # after step STEP's checkpoint, cap the size
        # of any file this process writes at BYTES (RLIMIT_FSIZE: a full disk's EFBIG) and
        # print what the run raised, as JSON
"""

import json
import os
import signal
import sys
import time

from zoo import TrainConfig, Trainer, create_model, load


def build(out):
    """The run every fault test trains: PPCA with an amortized guide (which draws, so the
    random state matters as much as the parameters), 3 epochs of 7 steps, a checkpoint at
    every step."""
    data = load("ppca-synthetic")
    zm = create_model("ppca", data=data, guide="amortized", latent_dim=3, seed=0)
    config = TrainConfig(
        num_epochs=3,
        batch_size=128,
        lr=0.05,
        progress=False,
        eval_every=0,
        checkpoint_every=1,
        kl_warmup_start=0.5,
        kl_warmup_end=2.0,
        out_dir=str(out),
    )
    return zm, data, config


def _kill_at(trainer, step, phase):
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    update = trainer.update

    def update_then_die():
        update()
        if phase == "step" and trainer.steps == step:
            die()

    trainer.update = update_then_die
    for name in ("fsync", "replace"):
        original = getattr(os, name)

        def patched(*args, _original=original, _name=name):
            if phase == _name and trainer.steps == step:
                die()
            return _original(*args)

        setattr(os, name, patched)


def _quota_after(trainer, step, limit):
    import resource

    replace = os.replace

    def replace_then_cap(src, dst):
        replace(src, dst)
        if trainer.steps == step and str(dst).endswith("checkpoint.pt"):
            # without this the kernel kills the process (SIGXFSZ) instead of failing the write
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    os.replace = replace_then_cap


def main(argv):
    out, mode, *args = argv
    zm, data, config = build(out)
    trainer = Trainer(zm, data, config=config)
    if mode == "hold":
        print("ready", flush=True)
        time.sleep(120)
        return
    if mode == "kill":
        _kill_at(trainer, int(args[0]), args[1])
        trainer.run()
        print("not killed", flush=True)
        return
    _quota_after(trainer, int(args[0]), int(args[1]))
    try:
        trainer.run()
    except OSError as exc:
        print(json.dumps({"errno": exc.errno, "message": str(exc)}), flush=True)
        return
    print(json.dumps({"errno": None, "message": "finished"}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
