"""benchmarks/overhead.py: the hand-written references compute the zoo's ELBO, and a smoke run.

Apples to apples: for the same parameters (each reference copies the zoo's initial ones) and
the same random draws (the same seed, drawn in the same order), the reference's ``-ELBO`` must
equal the zoo's.  Tolerance: 1e-6 relative (float32 round-off of sums taken in another order),
and at most 1 % of the change another seed makes, so the noise is shown to be the same draw.
PPCA's exact-posterior guide makes its ELBO the same for every draw (Tipping & Bishop 1999),
and hard attention sums its only latent out exactly, so only the first tolerance applies to them.
"""

import pandas as pd
import pyro
import pytest
import torch

from benchmarks import overhead
from benchmarks.common import load_data

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def datasets():
    cpu = torch.device("cpu")
    names = ("fashion-mnist", "digits", "cluttered-tiles")
    return {name: load_data(name, None, cpu, 300) for name in names}


@pytest.mark.parametrize("name", list(overhead.ENTRIES))
def test_reference_and_zoo_give_the_same_elbo_for_the_same_parameters_and_noise(name, datasets):
    builder, source = overhead.ENTRIES[name]
    data = datasets[source]
    pair = builder(data, 32)
    x = data.x_train[:32]
    y = None if data.info.task == "unsupervised" else data.y_train[:32]
    if name == "vae":
        x = torch.bernoulli(x)  # the Bernoulli likelihood's binarized input, fixed here

    def loss(fn, seed):
        torch.manual_seed(seed)
        with torch.no_grad(), pyro.validation_enabled(False):
            return fn(x, y).item()

    zoo, ref, other = loss(pair.zoo_loss, 1), loss(pair.ref_loss, 1), loss(pair.ref_loss, 2)
    assert zoo == pytest.approx(ref, rel=1e-6)
    if name not in ("ppca", "hard-attention"):  # exact: no draw (PPCA) or s summed out
        assert abs(other - ref) > 0  # the loss depends on the draw ...
        assert abs(zoo - ref) <= 0.01 * abs(other - ref)  # ... and both sides drew the same


def test_the_plate_scales_the_reference_like_the_zoo(datasets):
    # N / B: the same minibatch standing for a training set twice as large adds the same
    # likelihood term once more, on both sides (PPCA: no KL, a deterministic ELBO)
    data = datasets["digits"]
    pair = overhead.ppca_pair(data, 32)
    x = data.x_train[:32]
    with torch.no_grad():
        base = pair.ref_loss(x, None)
        doubled = pair.ref_loss.func(x, None, num_data=2 * pair.num_data)
    assert doubled.item() == pytest.approx(2 * base.item(), rel=1e-6)


def test_smoke_run_writes_the_table(tmp_path):
    argv = ["--models", "ppca", "sparsevd-lenet300", "--batch-sizes", "16", "--reps", "2"]
    argv += ["--steps", "1", "--train-subset", "200", "--devices", "cpu", "--out", str(tmp_path)]
    table = overhead.main([*argv, "--note", "smoke"])
    assert list(table["model"]) == ["ppca", "sparsevd-lenet300"]
    assert (table["zoo_ms"] > 0).all() and (table["ref_ms"] > 0).all()
    assert ((table["ratio_min"] <= table["ratio"]) & (table["ratio"] <= table["ratio_max"])).all()
    assert (table["zoo_peak_mib"] > 0).all() and (table["ref_peak_mib"] > 0).all()
    steps = -(-200 // 16)  # ceil(N / B)
    assert table["zoo_epoch_s"].tolist() == pytest.approx((table["zoo_ms"] * steps / 1000).tolist())
    csv = pd.read_csv(tmp_path / "overhead.csv")
    assert len(csv) == 2
    md = (tmp_path / "overhead.md").read_text()
    assert "python -m benchmarks.overhead --models ppca" in md
    assert "not measured: hard-attention" not in md and "Note: smoke" in md


def test_bad_settings_are_refused():
    with pytest.raises(SystemExit):
        overhead.main(["--reps", "0"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_smoke_run_times_with_events(tmp_path):
    argv = ["--models", "sparsevd-lenet300", "--batch-sizes", "16", "--reps", "2", "--steps", "1"]
    table = overhead.main(
        [*argv, "--train-subset", "200", "--devices", "cuda", "--out", str(tmp_path)]
    )
    assert list(table["device"]) == ["cuda"] and (table["zoo_peak_mib"] > 0).all()


def test_ablation_smoke_run_undoes_each_speed_up(tmp_path):
    argv = ["--ablation", "--batch-sizes", "16", "--reps", "1", "--steps", "1"]
    table = overhead.main(
        [*argv, "--train-subset", "200", "--devices", "cpu", "--out", str(tmp_path)]
    )
    assert list(table["undone"]) == list(overhead.ABLATIONS)
    assert (table["now_ms"] > 0).all() and (table["undone_ms"] > 0).all()
    assert (tmp_path / "ablation.md").exists() and (tmp_path / "ablation.csv").exists()


# "weights drawn under the LRT" is left out: the draw moves the random stream, so the two sides
# see different noise (tests/test_elbo.py checks that mode against Pyro's ELBO instead)
@pytest.mark.parametrize(
    "name", [n for n in overhead.ABLATIONS if n != "weights drawn under the LRT"]
)
def test_each_undone_speed_up_computes_the_same_elbo(name, datasets):
    # a speed-up may change the time, never the estimate: same seed, same loss
    data = datasets["fashion-mnist"]
    pair = overhead.ablation_pair(name, data, 32)
    x, y = data.x_train[:32], data.y_train[:32]
    losses = []
    for fn, validate in ((pair.zoo_loss, False), (pair.ref_loss, overhead.ABLATIONS[name][2])):
        torch.manual_seed(1)
        with torch.no_grad(), pyro.validation_enabled(validate):
            losses.append(fn(x, y).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_compiled_smoke_run_writes_its_table_and_the_refusal(tmp_path):
    # tiny: PPCA compiles on both sides (about 20 s); hard attention is refused, with the reason
    argv = ["--compiled", "--models", "ppca", "hard-attention", "--batch-sizes", "16"]
    argv += ["--reps", "2", "--steps", "1", "--train-subset", "200", "--devices", "cpu"]
    table = overhead.main([*argv, "--out", str(tmp_path)])
    ppca, attention = table.iloc[0], table.iloc[1]
    assert ppca["refused"] == "" and ppca["zoo_compile_s"] > 0 and ppca["ref_compile_s"] > 0
    for column in ("zoo_compiled_ms", "ref_compiled_ms", "ref_eager_ms"):
        assert ppca[column] > 0
    assert ppca["rc_min"] <= ppca["zoo/ref_compiled"] <= ppca["rc_max"]
    assert "enumeration" in attention["refused"]
    md = (tmp_path / "overhead-compiled.md").read_text()
    assert "python -m benchmarks.overhead --compiled" in md and "REFUSED: hard-attention" in md
    assert "(target <= 1.10)" in md and len(pd.read_csv(tmp_path / "overhead-compiled.csv")) == 2
