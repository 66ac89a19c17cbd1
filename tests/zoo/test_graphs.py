"""CUDA graphs for the compiled step (``cuda_graphs=True``, :mod:`zoo.train.graphs`).

Without a GPU the capture itself cannot run; what can is the static-buffer protocol around it
(:func:`~zoo.train.graphs.eager_capture` stands in for :func:`~zoo.train.graphs.cuda_capture`):
the minibatch and ``beta`` copied in, the parameters read in place, the same output tensors
at every call, and a run whose losses are exactly those of the uncaptured traced graph.  The
CUDA tests run the real capture where a GPU is.
"""

import dataclasses

import pytest
import torch

from zoo import TrainConfig, Trainer, create_model, fit, load
from zoo.train.compiled import CompiledStep, CompileError
from zoo.train.graphs import eager_capture

N_TRAIN = 500

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data():
    full = load("digits")
    return dataclasses.replace(full, x_train=full.x_train[:N_TRAIN], y_train=full.y_train[:N_TRAIN])


def _steps(data, graphs: bool):
    zm = create_model("logreg", data=data, seed=0)
    capture = eager_capture if graphs else None
    return zm, CompiledStep(zm, N_TRAIN, backend=None, cuda_graphs=graphs, capture=capture)


def test_replays_equal_the_traced_graph_with_new_batches_betas_and_parameters(data):
    # Tolerance: none; the same traced graph on the same inputs and noise gives equal tensors.
    (_, plain), (_, captured) = _steps(data, False), _steps(data, True)
    outputs = None
    for i, beta in enumerate((1.0, 0.25, 0.0)):
        xb, yb = data.x_train[100 * i : 100 * (i + 1)], data.y_train[100 * i : 100 * (i + 1)]
        torch.manual_seed(i)
        loss_a = plain.loss_and_grads(xb, yb, beta)
        torch.manual_seed(i)
        loss_b = captured.loss_and_grads(xb, yb, beta)
        assert torch.equal(loss_a, loss_b)
        for pa, pb in zip(plain.params, captured.params, strict=True):
            assert torch.equal(pa.grad, pb.grad)
        grads = [p.grad for p in captured.params]
        if outputs is not None:  # static outputs: the graph writes the same tensors
            assert all(g is o for g, o in zip(grads, outputs, strict=True))
        outputs = grads
        with torch.no_grad():  # an in-place update, as Adam makes: the next replay sees it
            for pa, pb in zip(plain.params, captured.params, strict=True):
                pa.sub_(0.1 * pa.grad)
                pb.sub_(0.1 * pb.grad)
    assert len(captured.shapes) == 1


def test_a_run_with_captured_steps_has_the_uncaptured_runs_losses(data):
    # Tolerance: none (float32, the same ops in the same order, the same random stream).
    histories = []
    for graphs in (False, True):
        zm = create_model("logreg", data=data, seed=0)
        trainer = Trainer(
            zm,
            data,
            progress=False,
            eval_every=0,
            num_epochs=2,
            batch_size=100,
            compile=True,
            validate=False,
        )
        trainer.compiled = CompiledStep(
            zm, N_TRAIN, backend=None, cuda_graphs=graphs, capture=eager_capture if graphs else None
        )
        histories.append(trainer.run().losses)
    assert len(histories[0]) == 2 * N_TRAIN // 100
    assert histories[0] == histories[1]


def test_cuda_graphs_are_refused_off_the_gpu_and_without_compile(data):
    with pytest.raises(CompileError, match="cuda_graphs=True needs a CUDA device"):
        fit(
            create_model("logreg", data=data),
            data,
            device="cpu",
            compile=True,
            cuda_graphs=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="cuda_graphs needs compile"):
        TrainConfig(cuda_graphs=True)


def test_the_cli_refuses_the_flag_on_the_cpu_with_the_reason(tmp_path, capsys):
    from zoo.cli import main

    argv = ["train", "logreg", "--num-epochs", "1", "--out", str(tmp_path / "run")]
    assert main([*argv, "--device", "cpu", "--compile", "--cuda-graphs", "--no-progress"]) == 2
    assert "cuda_graphs=True needs a CUDA device" in capsys.readouterr().err


@cuda
def test_cuda_replays_draw_fresh_noise_and_follow_the_eager_loss_curve(data):
    # Criterion as for compile=True: every epoch's mean loss within 2 % of eager's.
    gpu = dataclasses.replace(data, x_train=data.x_train.cuda(), y_train=data.y_train.cuda())
    zm = create_model("logreg", data=gpu, seed=0).to("cuda")
    step = CompiledStep(zm, N_TRAIN, backend=None, cuda_graphs=True)
    xb, yb = gpu.x_train[:100], gpu.y_train[:100]
    first = step.loss_and_grads(xb, yb, 1.0).item()
    assert step.loss_and_grads(xb, yb, 1.0).item() != first  # a replay draws new noise
    curves = []
    for graphs in (False, True):
        zm = create_model("logreg", data=data, seed=0)
        result = fit(
            zm,
            data,
            device="cuda",
            num_epochs=4,
            batch_size=100,
            eval_every=0,
            progress=False,
            compile=graphs,
            cuda_graphs=graphs,
        )
        curves.append(result.history["loss"].to_numpy())
    assert abs(curves[1] / curves[0] - 1).max() < 0.02
