"""One SVI loop for every model in the zoo: :class:`Trainer`, and :func:`fit` built on it.

The loop draws minibatches by index from tensors that stay on the device, asks a Pyro ELBO for
the loss and its gradients, and steps a torch optimizer.  It anneals the KL term, schedules the
learning rate, checkpoints atomically, resumes bit-identically on the CPU and stops at the first
non-finite loss or gradient.

The objective, per step, for a minibatch of ``B`` of the ``N`` training examples, is

    loss = -[(N / B) * sum_batch E_q log p(x_i | ...) - beta * KL(q || p)]

where ``beta`` follows the warm-up schedule (Bowman et al. 2016; Sønderby et al. 2016) and is
applied by scaling every latent sample site in both model and guide, so it weights exactly the
KL part whichever ELBO estimates it.  ``history`` reports ``loss / N`` per epoch.

The package: :mod:`zoo.train.config` (:class:`TrainConfig`, :class:`FitResult`,
:class:`DivergenceError`), :mod:`zoo.train.collapse` (:func:`check_collapse`, the
:class:`CollapseWarning` :func:`fit` gives a run that pruned every weight and learnt nothing),
:mod:`zoo.train.checkpoint` (atomic saves, random states,
:func:`load_checkpoint` and the checks before resuming), :mod:`zoo.train.device`
(:func:`resolve_device`, :func:`describe_machine`), :mod:`zoo.train.guards`
(:func:`grads_finite` and the parameters' check after an update), :mod:`zoo.train.rundir` (the
output folder: its lock, the refusal of a folder holding another run, orphan temporary files),
:mod:`zoo.train.validation` (where Pyro's validation runs: the first steps, evaluation, a
diverged step) and :mod:`zoo.train.trainer` (:class:`Trainer`, :func:`fit`).

Usage::

    from zoo import Trainer, create_model, fit, load
    data = load("digits")
    zm = create_model("ppca", data=data)
    result = fit(zm, data, num_epochs=50, lr=0.03, out_dir="runs/ppca")
    result.history.tail()

    trainer = Trainer(zm, data, num_epochs=5, progress=False)
    trainer.step()                      # one step, exactly as fit takes it
    trainer.run()                       # the rest of the run
"""

from zoo.train.checkpoint import CHECKPOINT_NAME, CHECKPOINT_VERSION, METRICS_NAME, load_checkpoint
from zoo.train.collapse import CollapseWarning, check_collapse
from zoo.train.config import DivergenceError, FitResult, TrainConfig
from zoo.train.device import describe_machine, resolve_device
from zoo.train.guards import grads_finite
from zoo.train.trainer import Trainer, fit

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "METRICS_NAME",
    "CollapseWarning",
    "DivergenceError",
    "FitResult",
    "TrainConfig",
    "Trainer",
    "check_collapse",
    "describe_machine",
    "fit",
    "grads_finite",
    "load_checkpoint",
    "resolve_device",
]
