"""Power normalisation and the complex AWGN channel against independent computations."""

import math

import pytest
import torch

from trainables.channel import AWGNChannel, mean_symbol_power, noise_variance, normalize_power


@pytest.mark.parametrize("shape", [(4, 8, 8, 8), (3, 2, 192, 128), (5, 38, 1, 1)])
@pytest.mark.parametrize("power", [1.0, 0.5, 3.0])
def test_power_normalisation_gives_mean_symbol_power_p(shape, power):
    z = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 7 + 3
    s = normalize_power(z, power)
    # independent: pair the real values into complex symbols and average |s|^2 per sample
    flat = s.flatten(1)
    k = flat.shape[1] // 2
    sym = torch.complex(flat[:, :k], flat[:, k:])
    per_sample = sym.abs().pow(2).mean(dim=1)
    assert torch.allclose(per_sample, torch.full_like(per_sample, power), rtol=1e-5)
    assert torch.allclose(mean_symbol_power(s), per_sample, rtol=1e-5)


def test_power_normalisation_is_per_sample_not_per_batch():
    z = torch.stack([torch.ones(2, 4, 4), 100 * torch.ones(2, 4, 4)])
    s = normalize_power(z, 1.0)
    assert torch.allclose(s[0], s[1])  # a per-batch norm would keep the 100x ratio


@pytest.mark.parametrize("snr_db", [20.0, 5.0, 0.0, -5.0])
def test_noise_variance_matches_snr(snr_db):
    ch = AWGNChannel(snr_db, power=1.0).eval()
    s = torch.zeros(64, 2, 64, 64)
    gen = torch.Generator().manual_seed(1)
    noise = ch(s, gen)
    sigma2 = 10 ** (-snr_db / 10)
    flat = noise.flatten(1)
    k = flat.shape[1] // 2
    complex_noise = torch.complex(flat[:, :k], flat[:, k:])
    measured = complex_noise.abs().pow(2).mean().item()  # E|eps|^2 = sigma^2
    assert measured == pytest.approx(sigma2, rel=0.01)
    assert flat.var().item() == pytest.approx(sigma2 / 2, rel=0.01)  # sigma^2/2 per real component
    assert float(noise_variance(snr_db)) == pytest.approx(sigma2)
    # the empirical SNR of a normalised signal through the channel
    sig = normalize_power(torch.randn(64, 2, 64, 64, generator=gen))
    eps = ch(sig, gen) - sig
    snr = 10 * math.log10(mean_symbol_power(sig).mean().item() / mean_symbol_power(eps).mean().item())
    assert snr == pytest.approx(snr_db, abs=0.05)


def test_snr_range_is_sampled_per_batch_while_training_only():
    ch = AWGNChannel(10.0, train_snr_range_db=(0.0, 20.0))
    gen = torch.Generator().manual_seed(0)
    ch.train()
    draws = [ch.draw_snr(gen) for _ in range(200)]
    assert min(draws) >= 0.0 and max(draws) <= 20.0 and len(set(draws)) == 200
    assert abs(sum(draws) / 200 - 10.0) < 1.5
    ch.eval()
    assert ch.draw_snr(gen) == 10.0


def test_channel_noise_replays_from_generator_state():
    ch = AWGNChannel(5.0)
    s = torch.zeros(2, 4, 8, 8)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    a = ch(s, g)
    g.set_state(state)
    assert torch.equal(a, ch(s, g))
