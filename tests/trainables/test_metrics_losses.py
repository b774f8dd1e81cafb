"""PSNR/SSIM on known pairs and both contrastive-loss variants on a hand-computed case."""

import math

import pytest
import torch

from trainables.losses import mix, reconstruction_loss, semantic_contrastive_loss
from trainables.metrics import psnr_per_image, ssim_per_image


def test_psnr_of_known_pairs():
    x = torch.zeros(1, 3, 4, 4)
    assert psnr_per_image(x, x + 0.1).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert psnr_per_image(x, x + 0.01).item() == pytest.approx(40.0, abs=1e-3)
    assert psnr_per_image(x + 0.5, x + 0.5).item() == pytest.approx(100.0)  # capped, not inf


def test_psnr_is_averaged_per_image_not_over_batch_mse():
    x = torch.zeros(2, 3, 4, 4)
    x_hat = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.01)])
    per_image = psnr_per_image(x, x_hat)
    assert per_image.tolist() == pytest.approx([20.0, 40.0], abs=1e-3)
    batch_mse_psnr = 10 * math.log10(1 / ((0.01 + 0.0001) / 2))
    assert per_image.mean().item() == pytest.approx(30.0, abs=1e-3)
    assert per_image.mean().item() != pytest.approx(batch_mse_psnr, abs=0.5)


def test_psnr_clamps_reconstruction_to_unit_range():
    x = torch.ones(1, 3, 4, 4)
    assert psnr_per_image(x, x + 5.0).item() == pytest.approx(100.0)


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert ssim_per_image(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert (ssim_per_image(x, noisy) < 0.9).all()


def test_reconstruction_loss_is_eq8():
    x, x_hat = torch.zeros(2, 3, 2, 2), torch.full((2, 3, 2, 2), 0.5)
    assert reconstruction_loss(x, x_hat).item() == pytest.approx(0.25)


def _unit(*v):
    t = torch.tensor(v, dtype=torch.float64)
    return t / t.norm()


def _hand_losses(q, v, tau):
    """Eq. 7 and InfoNCE written out with Python loops over a 3-sample batch."""
    n = len(q)
    eq7, nce = 0.0, 0.0
    for i in range(n):
        pos = math.exp(float(q[i] @ v[i]) / tau)
        negs = [math.exp(float(q[i] @ q[m]) / tau) for m in range(n) if m != i]
        eq7 += -math.log(pos / sum(negs))
        nce += -math.log(pos / (pos + sum(negs)))
    return eq7 / n, nce / n


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_contrastive_losses_match_hand_computation(tau):
    q = torch.stack([_unit(1, 0), _unit(0, 1), _unit(1, 1)])
    v = torch.stack([_unit(1, 0.2), _unit(0.1, 1), _unit(-1, 1)])
    want_eq7, want_nce = _hand_losses(q, v, tau)
    assert semantic_contrastive_loss(q, v, tau, "eq7").item() == pytest.approx(want_eq7, rel=1e-5)
    assert semantic_contrastive_loss(q, v, tau, "infonce").item() == pytest.approx(want_nce, rel=1e-5)
    # InfoNCE's denominator also holds the positive, so its loss is always the larger
    assert want_nce > want_eq7


def test_contrastive_loss_needs_negatives_and_known_variant():
    q = _unit(1, 0)[None]
    with pytest.raises(ValueError, match="at least 2"):
        semantic_contrastive_loss(q, q, 0.1)
    with pytest.raises(ValueError, match="variant"):
        semantic_contrastive_loss(torch.eye(2), torch.eye(2), 0.1, "simclr")


def test_mix_is_eq9_with_skipped_zero_weights():
    rec, other = torch.tensor(2.0), torch.tensor(4.0)
    assert mix(0.25, rec, other).item() == pytest.approx(3.5)
    assert mix(1.0, rec, torch.tensor(float("nan"))).item() == 2.0
    assert mix(0.0, torch.tensor(float("nan")), other).item() == 4.0
