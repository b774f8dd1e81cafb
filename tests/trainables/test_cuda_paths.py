"""What only a GPU can check: exact fp32 evaluation, the CUDA generator paths, codec shapes, resume.

Every test here is marked ``cuda`` and skips, with the reason, where ``torch.cuda.is_available()``
is false. ``bench/gpu_check.sh`` runs them first on a lent GPU machine (``pytest -m cuda``).
"""

from __future__ import annotations

import pytest
import torch

from trainables.channel import AWGNChannel, mean_symbol_power
from trainables.classifier import DownstreamModel
from trainables.codec import build_link
from trainables.data import ImageSet, iterate_batches
from trainables.losses import semantic_contrastive_loss
from trainables.projection import ProjectionHead
from trainables.training.device import Runtime
from trainables.training.loop import Models, evaluate

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def _models(snr_db: float, width: int = 16, arch: str = "paper", kn: float = 1 / 6) -> Models:
    torch.manual_seed(0)
    link = build_link(arch, width, kn, (32, 32), AWGNChannel(snr_db))
    downstream = DownstreamModel("resnet20").eval()
    return Models(link=link.eval(), projection=ProjectionHead(downstream.feature_dim, 8), downstream=downstream)


def _to(models: Models, rt: Runtime) -> Models:
    return Models(link=rt.prepare(models.link), projection=models.projection.to(rt.device),
                  downstream=rt.prepare(models.downstream))


def _images(n: int, seed: int = 0) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8),
                    torch.randint(0, 10, (n,), generator=gen))


def _tf32_state():
    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    return (conv, getattr(torch.backends.cuda.matmul, "fp32_precision", None)) if conv is not None else \
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)


def test_evaluation_on_gpu_is_exact_fp32_like_cpu():
    """A practically noiseless channel (300 dB), the same weights: GPU scores = CPU scores up to fp32 rounding.

    bf16 evaluation (the old behaviour) is off by ~0.1–1 dB in PSNR; TF32 by ~1e-2 dB.
    """
    import copy

    cpu_models, ds = _models(300.0), _images(500)
    gpu_models = _to(copy.deepcopy(cpu_models), Runtime(CUDA))
    before = _tf32_state()
    cpu = evaluate(cpu_models, ds, 250, 7, Runtime(CPU))
    gpu = evaluate(gpu_models, ds.to(CUDA), 250, 7, Runtime(CUDA))
    assert _tf32_state() == before  # evaluation restores the TF32 settings
    assert gpu["psnr"] == pytest.approx(cpu["psnr"], abs=2e-4)
    assert gpu["ssim"] == pytest.approx(cpu["ssim"], abs=1e-5)
    assert abs(gpu["accuracy"] - cpu["accuracy"]) <= 2 / len(ds)  # a logit tie may flip


def test_snr_range_with_a_cuda_generator_draws_on_the_gpu_without_host_sync():
    ch = AWGNChannel(10.0, train_snr_range_db=(0.0, 20.0)).train()
    gen = torch.Generator(device=CUDA).manual_seed(0)
    s = torch.randn(64, 8, 8, 8, device=CUDA)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        draws = [ch.draw_snr(gen) for _ in range(100)]
        out = ch(s, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(isinstance(d, torch.Tensor) and d.is_cuda for d in draws)  # never read back per batch
    draws = torch.stack(draws).cpu()
    assert draws.min() >= 0 and draws.max() <= 20
    assert len(set(draws.tolist())) == 100 and out.device.type == "cuda" and out.shape == s.shape
    ch.eval()
    assert ch.draw_snr(gen) == 10.0


def test_fixed_snr_channel_on_gpu_matches_the_variance():
    ch = AWGNChannel(5.0).eval()
    noise = ch(torch.zeros(256, 2, 32, 32, device=CUDA), torch.Generator(device=CUDA).manual_seed(1))
    assert noise.flatten(1).var().item() == pytest.approx(10 ** (-0.5) / 2, rel=0.01)


def test_on_device_batches_from_a_cuda_generator():
    ds = _images(64).to(CUDA)
    gen = torch.Generator(device=CUDA).manual_seed(0)
    batches = list(iterate_batches(ds, 16, generator=gen, shuffle=True, hflip=True, drop_last=True))
    assert len(batches) == 4 and all(x.device.type == "cuda" and y.device.type == "cuda" for x, y in batches)
    seen = torch.cat([y for _, y in batches]).sort().values
    assert torch.equal(seen, ds.labels.sort().values)


def test_contrastive_loss_is_fp32_under_cuda_autocast():
    gen = torch.Generator(device=CUDA).manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(128, 32, device=CUDA, generator=gen), dim=1)
    v = torch.nn.functional.normalize(q + 0.1 * torch.randn(128, 32, device=CUDA, generator=gen), dim=1)
    exact = semantic_contrastive_loss(q, v, 0.05)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        amp = semantic_contrastive_loss(q, v, 0.05)
    assert amp.dtype == torch.float32 and torch.equal(amp, exact)


@pytest.mark.parametrize("arch, kn", [("paper", 1 / 48), ("paper", 1 / 12), ("paper", 1 / 2.5), ("plain", 1 / 6)])
def test_codec_shapes_and_power_on_gpu_under_bf16_channels_last(arch, kn):
    from trainables.bandwidth import latent_channels

    rt = Runtime(CUDA)
    link = rt.prepare(_models(20.0, 32, arch, kn).link).train()
    x = rt.images(torch.rand(8, 3, 32, 32, device=CUDA))
    with rt.autocast():
        out = link(x, torch.Generator(device=CUDA).manual_seed(0))
    c = latent_channels(kn, 32, 32).channels
    assert out.x_hat.shape == x.shape and out.symbols.shape == (8, c, 8, 8)
    assert out.x_hat.dtype in (torch.bfloat16, torch.float32) and out.x_hat.is_cuda
    assert torch.allclose(mean_symbol_power(out.symbols.float()), torch.ones(8, device=CUDA), rtol=2e-2)
    out.x_hat.float().mean().backward()
    assert all(p.grad is not None for p in link.encoder.parameters())


def test_trial_on_gpu_trains_with_fused_adam_and_device_generators(synthetic_cifar_dir, random_resnet20_checkpoint):
    from trainables.config import build_trial_config
    from trainables.reporter import MemoryReporter
    from trainables.training import run_trial

    cfg = build_trial_config({
        "data": {"search_dirs": [str(synthetic_cifar_dir)], "train_per_class": 20, "tune_per_class": 5, "hflip": True},
        "classifier": {"arch": "resnet20", "checkpoint": str(random_resnet20_checkpoint)},
        "codec": {"width": 16, "kn": 1 / 6}, "channel": {"train_snr_range_db": [5, 20]},
        "stage1": {"epochs": 1, "lr": 0.003}, "stage2": {"epochs": 1, "lr": 1e-3}, "batch_size": 32,
        "device": "cuda",
    })
    rep = MemoryReporter()
    final = run_trial(cfg, rep)
    assert [m["stage"] for m in rep.history] == [1, 2]
    assert 0 <= final["accuracy"] <= 1 and final["psnr"] > 5 and final["train_images_per_s"] > 0


def test_resume_on_gpu_continues_the_device_generators(synthetic_cifar_dir, random_resnet20_checkpoint, tmp_path):
    """Interrupted after epoch 1 and resumed == run straight: same epochs, the same generator states.

    cuDNN's backward kernels are not deterministic, so the weights and scores agree closely, not bitwise;
    the data and noise generators (CUDA generators now) must continue exactly.
    """
    from trainables.config import build_trial_config
    from trainables.reporter import FolderReporter
    from trainables.training import run_trial
    from trainables.training.checkpoint import load_checkpoint

    cfg = build_trial_config({
        "data": {"search_dirs": [str(synthetic_cifar_dir)], "train_per_class": 20, "tune_per_class": 5, "hflip": True},
        "classifier": {"arch": "resnet20", "checkpoint": str(random_resnet20_checkpoint)},
        "codec": {"width": 16, "kn": 1 / 6}, "channel": {"train_snr_range_db": [5, 20]},
        "stage1": {"epochs": 2, "lr": 0.003}, "stage2": {"epochs": 1, "lr": 1e-3}, "batch_size": 32,
        "device": "cuda",
    })

    class Interrupted(Exception):
        pass

    class CrashAfterFirst(FolderReporter):
        def report(self, metrics, checkpoint_dir):
            super().report(metrics, checkpoint_dir)
            if metrics["epoch"] == 1:
                raise Interrupted

    straight = run_trial(cfg, FolderReporter(tmp_path / "a", resume=False))
    with pytest.raises(Interrupted):
        run_trial(cfg, CrashAfterFirst(tmp_path / "b", resume=False))
    resumed = run_trial(cfg, FolderReporter(tmp_path / "b", resume=True))
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint"), load_checkpoint(tmp_path / "b" / "checkpoint")
    assert a.epoch == b.epoch == 3 and [m["epoch"] for m in b.history] == [1, 2, 3]
    assert torch.equal(a.rng["data"], b.rng["data"]) and torch.equal(a.rng["noise"], b.rng["noise"])
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=5e-2)
    assert resumed["psnr"] == pytest.approx(straight["psnr"], abs=0.5)
