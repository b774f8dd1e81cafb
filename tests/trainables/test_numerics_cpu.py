"""The GPU fixes, checked on CPU: SNR draws on the generator's device, fp32 scores and losses under autocast.

A bf16 CPU autocast stands in for the GPU's: it takes the same code paths (``Runtime.autocast``,
``Runtime.exact``), so a regression that lets training numerics into the scores shows here too.
The CUDA versions of these checks are in ``test_cuda_paths.py``.
"""

from __future__ import annotations

import pytest
import torch

from trainables.channel import AWGNChannel, noise_variance
from trainables.classifier import DownstreamModel
from trainables.codec import build_link
from trainables.data import ImageSet, iterate_batches
from trainables.losses import semantic_contrastive_loss
from trainables.metrics import psnr_per_image, ssim_per_image
from trainables.projection import ProjectionHead
from trainables.training.device import Runtime, pick_runtime
from trainables.training.loop import Models, evaluate

CPU = torch.device("cpu")


class BF16CPU(Runtime):
    """A CPU runtime that trains under bf16 autocast, as CUDA does."""

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16)


def _models(snr_db: float = 10.0) -> Models:
    torch.manual_seed(0)
    link = build_link("paper", 8, 1 / 6, (32, 32), AWGNChannel(snr_db))
    downstream = DownstreamModel("resnet20").eval()
    return Models(link=link.eval(), projection=ProjectionHead(downstream.feature_dim, 8), downstream=downstream)


def _images(n: int = 24, seed: int = 0) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8),
                    torch.randint(0, 10, (n,), generator=gen))


def _evaluate_as_before(models: Models, ds: ImageSet, batch_size: int, noise_seed: int) -> dict[str, float]:
    """The evaluation of the first CPU results: per-batch Python sums (the reference for bit-identity)."""
    gen = torch.Generator().manual_seed(noise_seed)
    correct, psnr, ssim = 0, 0.0, 0.0
    with torch.no_grad():
        for x, y in iterate_batches(ds, batch_size):
            x_hat = models.link(x, gen).x_hat
            logits = models.downstream(x_hat.clamp(0, 1))
            correct += int((logits.argmax(1) == y).sum())
            psnr += float(psnr_per_image(x, x_hat).sum())
            ssim += float(ssim_per_image(x, x_hat).sum())
    n = len(ds)
    return {"accuracy": correct / n, "psnr": psnr / n, "ssim": ssim / n}


def test_snr_range_draw_on_cpu_is_the_python_float_of_before():
    ch = AWGNChannel(10.0, train_snr_range_db=(0.0, 20.0)).train()
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(5):
        got = ch.draw_snr(a)
        assert isinstance(got, float) and got == 0.0 + 20.0 * torch.rand((), generator=b).item()
    # no generator: drawn from the global CPU stream, whatever device the signal is on
    assert isinstance(ch.draw_snr(None, "cpu"), float)


def test_channel_output_on_cpu_is_bit_identical_to_before():
    ch = AWGNChannel(10.0, train_snr_range_db=(0.0, 20.0)).train()
    s = torch.randn(4, 8, 4, 4, generator=torch.Generator().manual_seed(1))
    got = ch(s, torch.Generator().manual_seed(2))
    ref_gen = torch.Generator().manual_seed(2)
    snr = 0.0 + 20.0 * torch.rand((), generator=ref_gen).item()
    sigma2 = float(noise_variance(snr))
    expected = s + torch.randn(s.shape, generator=ref_gen) * (sigma2 / 2) ** 0.5
    assert torch.equal(got, expected)


def test_tensor_snr_path_matches_the_float_path_closely():
    """The device path (0-d tensor SNR, no ``.item()``) gives the same noise scale up to fp32 rounding."""
    ch = AWGNChannel(10.0, train_snr_range_db=(0.0, 20.0)).train()
    s = torch.zeros(2, 8, 4, 4)
    snr = torch.tensor(7.5)
    ch.draw_snr = lambda generator, device=None: snr  # force the tensor path on CPU
    got = ch(s, torch.Generator().manual_seed(5))
    ch_fixed = AWGNChannel(7.5).eval()
    expected = ch_fixed(s, torch.Generator().manual_seed(5))
    assert torch.allclose(got, expected, rtol=1e-6, atol=0)


def test_contrastive_loss_is_fp32_under_autocast():
    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(16, 32, generator=gen), dim=1)
    v = torch.nn.functional.normalize(q + 0.1 * torch.randn(16, 32, generator=gen), dim=1)
    exact = semantic_contrastive_loss(q, v, 0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_amp = semantic_contrastive_loss(q, v, 0.05)
        bf16_sims = (q @ q.T).dtype  # what autocast would have done to the similarities
    assert under_amp.dtype == torch.float32 and torch.equal(under_amp, exact)
    assert bf16_sims == torch.bfloat16  # the test would catch a loss computed under autocast


def test_evaluate_is_bit_identical_to_the_per_batch_python_sums():
    models, ds = _models(), _images()
    got = evaluate(models, ds, 10, 123, Runtime(CPU))
    assert got == _evaluate_as_before(models, ds, 10, 123)


def test_evaluate_is_fp32_even_when_training_runs_under_bf16_autocast():
    models, ds = _models(), _images()
    fp32 = evaluate(models, ds, 10, 123, Runtime(CPU))
    assert evaluate(models, ds, 10, 123, BF16CPU(CPU)) == fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # also inside an outer autocast region
        assert evaluate(models, ds, 10, 123, Runtime(CPU)) == fp32
    # and bf16 would have made a difference: the reconstruction changes under autocast
    x = ds.images[:10].float() / 255
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x_bf16 = models.link(x, torch.Generator().manual_seed(1)).x_hat
    with torch.no_grad():
        x_fp32 = models.link(x, torch.Generator().manual_seed(1)).x_hat
    assert x_bf16.dtype == torch.bfloat16 and not torch.equal(x_bf16.float(), x_fp32)


def test_training_epoch_under_bf16_autocast_runs_with_fp32_losses():
    from trainables.config import TrialConfig
    from trainables.training.loop import train_epoch
    from trainables.training.plan import stage_plans
    from trainables.training.trial import make_optimizer

    cfg = TrialConfig(codec={"width": 8, "kn": 1 / 6}, classifier={"arch": "resnet20", "checkpoint": None, "allow_untrained": True},
                      channel={"train_snr_range_db": (5.0, 15.0)}, batch_size=8, device="cpu")
    models, ds, rt = _models(), _images(32), BF16CPU(CPU)
    models.link.channel.train_snr_range_db = (5.0, 15.0)
    for plan in stage_plans(cfg):
        opt = make_optimizer(models, plan)[0]
        assert opt.defaults["fused"] is None  # CPU keeps the default Adam (and its numbers)
        out = train_epoch(models, plan, opt, ds, 8, True, torch.Generator().manual_seed(0),
                          torch.Generator().manual_seed(1), rt, 0.1, "eq7")
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values()), out
        assert out["train_images_per_s"] > 0


def test_exact_restores_autocast_and_stopwatch_counts():
    rt = pick_runtime("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with rt.exact():
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
    clock = rt.stopwatch()
    assert clock.seconds() >= 0


@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled-eager-backend"])
def test_compile_models_keeps_checkpoint_keys_and_outputs(compile_):
    """``compile_models`` must not rename state-dict keys (checkpoints) nor change the results."""
    from trainables.training.loop import compile_models

    models, ds = _models(), _images(8)
    keys = {name: list(m.state_dict()) for name, m in models.modules().items()}
    before = evaluate(models, ds, 8, 5, Runtime(CPU))
    if compile_:
        torch._dynamo.reset()
        compile_models(models, backend="eager")
    assert {name: list(m.state_dict()) for name, m in models.modules().items()} == keys
    assert evaluate(models, ds, 8, 5, Runtime(CPU)) == pytest.approx(before, rel=1e-6)
