"""Channel models (AWGN, Rayleigh block fading with and without CSI, TDL over OFDM) against numpy/scipy.

Every statistic is recomputed here from the channel's inputs and outputs with numpy, pairing reals
into complex symbols independently (first half real, second half imaginary); tolerances are five
standard errors of the estimate at the sample size used.
"""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import special, stats

from trainables.channel import (
    AWGNChannel, RayleighChannel, TDLChannel, build_channel, normalize_power,
)
from trainables.codec import build_link
from trainables.config import ConfigError, build_trial_config

MODELS = ["awgn", "rayleigh", "rayleigh_nocsi", "tdl"]
FADING = {
    "rayleigh": lambda **kw: RayleighChannel(csi=True, **kw),
    "rayleigh_nocsi": lambda **kw: RayleighChannel(csi=False, **kw),
    "rayleigh_blocks": lambda **kw: RayleighChannel(coherence_symbols=7, **kw),
    "tdl": lambda **kw: TDLChannel(**kw),
}
# TR 38.901 Table 7.7.2-1, TDL-A: normalised delays and powers (dB), typed from the standard
TDL_A_DELAYS = np.array([0.0, 0.3819, 0.4025, 0.5868, 0.4610, 0.5375, 0.6708, 0.5750, 0.7618, 1.5375, 1.8978,
                         2.2242, 2.1718, 2.4942, 2.5119, 3.0582, 4.0810, 4.4579, 4.5695, 4.7966, 5.0066, 5.3043,
                         9.6586])
TDL_A_POWERS_DB = np.array([-13.4, 0.0, -2.2, -4.0, -6.0, -8.2, -9.9, -10.5, -7.5, -15.9, -6.6, -16.7, -12.4,
                            -15.2, -10.8, -11.3, -12.7, -16.2, -18.3, -18.9, -16.6, -19.9, -29.7])


def as_complex(t: torch.Tensor) -> np.ndarray:
    flat = t.detach().double().numpy().reshape(t.shape[0], -1)
    k = flat.shape[1] // 2
    return flat[:, :k] + 1j * flat[:, k:]


def latent(shape, power=1.0, seed=0) -> torch.Tensor:
    return normalize_power(torch.randn(shape, generator=torch.Generator().manual_seed(seed)), power)


def five_se(x: np.ndarray) -> float:
    """Five standard errors of the mean of ``x``."""
    return 5 * x.std() / math.sqrt(x.size)


@pytest.mark.parametrize("model", MODELS)
def test_build_channel_gives_each_model_with_the_config_values(model):
    cfg = build_trial_config({"channel": {"model": model, "snr_db": 7.0, "power": 2.0,
                                          "train_snr_range_db": [0.0, 10.0], "coherence_symbols": 4}})
    ch = build_channel(cfg.channel)
    expected = {"awgn": AWGNChannel, "rayleigh": RayleighChannel, "rayleigh_nocsi": RayleighChannel,
                "tdl": TDLChannel}[model]
    assert type(ch) is expected
    assert (ch.snr_db, ch.power, ch.train_snr_range_db) == (7.0, 2.0, (0.0, 10.0))
    if model.startswith("rayleigh"):
        assert ch.csi == (model == "rayleigh") and ch.coherence_symbols == 4
    link = build_link("paper", 8, 1 / 12, (16, 16), ch).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = link(x, torch.Generator().manual_seed(1))
    assert out.x_hat.shape == x.shape and torch.isfinite(out.x_hat).all()
    assert list(ch.state_dict()) == []  # Sionna's blocks stay out of checkpoints


def test_old_channel_configs_keep_todays_awgn_bit_for_bit():
    cfg = build_trial_config({"channel": {"snr_db": 5.0, "train_snr_range_db": [0.0, 10.0]}})
    assert cfg.channel.model == "awgn"
    s = latent((4, 8, 8, 8))
    new = build_channel(cfg.channel).train()(s, torch.Generator().manual_seed(3))
    old = AWGNChannel(5.0, train_snr_range_db=(0.0, 10.0)).train()(s, torch.Generator().manual_seed(3))
    assert torch.equal(new, old)


@pytest.mark.parametrize(("field", "value"), [
    ("model", "rician"), ("coherence_symbols", 0), ("tdl_profile", "F"), ("tdl_delay_spread_ns", -1.0),
    ("ofdm_subcarriers", 0), ("ofdm_subcarrier_spacing_khz", 0.0), ("carrier_frequency_ghz", 0.0),
    ("speed_mps", -1.0),
])
def test_invalid_channel_fields_are_refused_by_name(field, value):
    with pytest.raises(ConfigError) as err:
        build_trial_config({"channel": {field: value}})
    assert [path for path, _ in err.value.problems] == [f"channel.{field}"]


@pytest.mark.parametrize("name", ["awgn", *FADING])
@pytest.mark.parametrize(("snr_db", "power"), [(10.0, 1.0), (0.0, 2.0)])
def test_symbol_power_and_noise_variance(name, snr_db, power):
    s = latent((64, 16, 8, 8), power)  # k = 512 symbols per sample
    sc = as_complex(s)
    assert np.allclose(np.mean(np.abs(sc) ** 2, axis=1), power, rtol=1e-5)
    gen = torch.Generator().manual_seed(1)
    if name == "awgn":
        h, y = np.ones_like(sc), as_complex(AWGNChannel(snr_db, power).eval()(s, gen))
    else:
        r = FADING[name](snr_db=snr_db, power=power).eval().transmit(s, gen)
        h, y = r.h.numpy().astype(complex), r.y.numpy().astype(complex)
        per_sample = np.mean(np.abs(h * sc) ** 2, axis=1)  # received signal power, E|h|^2 = 1
        assert abs(per_sample.mean() - power) < five_se(per_sample)
    n = (y - h * sc).ravel()
    sigma2 = power / 10 ** (snr_db / 10)
    assert abs(np.mean(np.abs(n) ** 2) - sigma2) < five_se(np.abs(n) ** 2)
    for part in (n.real, n.imag):  # sigma^2/2 per real component, zero mean
        assert abs(part.var() - sigma2 / 2) < 5 * sigma2 / 2 * math.sqrt(2 / n.size)
        assert abs(part.mean()) < 5 * math.sqrt(sigma2 / 2 / n.size)
    assert abs(np.corrcoef(n.real, n.imag)[0, 1]) < 5 / math.sqrt(n.size)


def test_rayleigh_gain_is_circular_cn01_with_exponential_power():
    n = 20_000  # one gain per image (quasi-static): one gain per sample
    r = RayleighChannel(10.0).eval().transmit(latent((n, 4)), torch.Generator().manual_seed(2))
    h = r.h.numpy()[:, 0].astype(complex)
    p = np.abs(h) ** 2
    assert stats.kstest(p, "expon").pvalue > 1e-3
    assert abs(p.mean() - 1) < 5 / math.sqrt(n)  # Var = 1
    assert abs(np.mean(p ** 2) - 2) < 5 * math.sqrt(20 / n)  # E|h|^4 = 2, Var(|h|^4) = 24 - 4
    assert stats.kstest(np.angle(h), stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3
    assert abs(np.mean(h ** 2)) < 5 / math.sqrt(n)  # circular: E[h^2] = 0


def test_rayleigh_gain_is_constant_within_coherence_blocks_and_independent_across():
    block, k, n = 5, 23, 4000  # 23 symbols: four whole blocks and one of 3
    r = RayleighChannel(10.0, coherence_symbols=block).eval().transmit(latent((n, 2 * k)), torch.Generator().manual_seed(4))
    h = r.h.numpy().astype(complex)
    starts = np.arange(0, k, block)
    for a in starts:
        assert (h[:, a:a + block] == h[:, [a]]).all()
    firsts = h[:, starts]
    assert len(np.unique(firsts)) == firsts.size  # a fresh draw per block and per sample
    corr = np.corrcoef(np.abs(firsts.T) ** 2)  # power correlation between blocks of a sample
    off_diagonal = corr[~np.eye(len(starts), dtype=bool)]
    assert np.abs(off_diagonal).max() < 5 / math.sqrt(n)
    cross = np.mean(firsts[:, 0] * firsts[:, 1].conj())  # complex correlation E[h_0 h_1*] = 0
    assert abs(cross) < 5 / math.sqrt(n)


@pytest.mark.parametrize("name", ["rayleigh", "rayleigh_blocks", "tdl"])
def test_csi_receiver_is_the_lmmse_filter_with_its_error_variance(name):
    snr_db, power = 10.0, 2.0
    ch = FADING[name](snr_db=snr_db, power=power).eval()
    s = latent((500, 16, 8, 8), power)
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    r = ch.transmit(s, gen)
    gen.set_state(state)
    s_hat = as_complex(ch(s, gen))
    h, y, sc = r.h.numpy().astype(complex), r.y.numpy().astype(complex), as_complex(s)
    sigma2 = power / 10 ** (snr_db / 10)
    c = sigma2 / power
    assert np.allclose(s_hat, h.conj() * y / (np.abs(h) ** 2 + c), atol=1e-5)
    # error variance given h and s: (c^2 |s|^2 + |h|^2 sigma^2) / (|h|^2 + c)^2
    err = np.abs(s_hat - sc) ** 2
    theory = (c ** 2 * np.abs(sc) ** 2 + np.abs(h) ** 2 * sigma2) / (np.abs(h) ** 2 + c) ** 2
    assert abs(err.mean() - theory.mean()) < five_se(err)
    if name == "rayleigh":  # averaged over |h|^2 ~ Exp(1): E[sigma^2 / (X + c)] = sigma^2 e^c E1(c)
        per_image = err.mean(axis=1)
        assert abs(per_image.mean() - sigma2 * math.exp(c) * special.exp1(c)) < five_se(per_image)
        assert per_image.max() <= power * 1.05  # MMSE never amplifies noise beyond P (zero forcing would)


def test_without_csi_the_decoder_gets_y_as_received():
    ch = RayleighChannel(10.0, csi=False).eval()
    s = latent((8, 4, 4, 4))
    gen = torch.Generator().manual_seed(6)
    state = gen.get_state()
    y = ch.transmit(s, gen).y.numpy()
    gen.set_state(state)
    assert np.array_equal(as_complex(ch(s, gen)), y.astype(complex))


def test_tdl_frequency_correlation_follows_the_tdl_a_profile():
    ds, spacing, n = 300e-9, 30e3, 3000
    ch = TDLChannel(30.0, profile="A", delay_spread_ns=ds * 1e9, subcarriers=64,
                    subcarrier_spacing_khz=spacing / 1e3).eval()
    h = ch.transmit(latent((n, 128)), torch.Generator().manual_seed(7)).h.numpy().astype(complex)  # 64 REs
    per_image = np.mean(np.abs(h) ** 2, axis=1)
    assert abs(per_image.mean() - 1) < five_se(per_image)  # not normalised per image: E|h|^2 = 1
    powers = 10 ** (TDL_A_POWERS_DB / 10)
    powers /= powers.sum()
    for lag in (1, 4, 16):
        # E[h(f) h*(f + df)] = sum_p P_p exp(j 2 pi df tau_p)
        expected = np.sum(powers * np.exp(2j * np.pi * lag * spacing * TDL_A_DELAYS * ds))
        pairs = (h[:, :-lag] * h[:, lag:].conj()).mean(axis=1)
        assert abs(pairs.mean() - expected) < 5 * pairs.std() / math.sqrt(n)


def test_tdl_grid_is_filled_frequency_first_and_doppler_follows_clarke():
    subcarriers, symbols, n = 8, 9, 3000
    s = latent((n, 2 * subcarriers * symbols))
    static = TDLChannel(30.0, subcarriers=subcarriers).eval().transmit(s, torch.Generator().manual_seed(8))
    grid = static.h.numpy().reshape(n, symbols, subcarriers)
    assert (grid == grid[:, :1]).all()  # speed 0: every OFDM symbol sees the same response
    speed, fc, spacing = 100.0, 3.5e9, 30e3
    moving = TDLChannel(30.0, subcarriers=subcarriers, speed_mps=speed, carrier_frequency_ghz=fc / 1e9,
                        subcarrier_spacing_khz=spacing / 1e3).eval()
    grid = moving.transmit(s, torch.Generator().manual_seed(8)).h.numpy().astype(complex).reshape(n, symbols, subcarriers)
    f_doppler = speed / 299_792_458 * fc
    for lag in (2, 8):  # Clarke: E[h(t) h*(t + dt)] = J0(2 pi f_d dt), OFDM symbols 1/spacing apart
        pairs = (grid[:, 0] * grid[:, lag].conj()).mean(axis=1)
        assert abs(pairs.mean() - special.j0(2 * np.pi * f_doppler * lag / spacing)) < 5 * pairs.std() / math.sqrt(n)


@pytest.mark.parametrize("name", ["awgn", *FADING])
def test_same_generator_state_replays_bit_for_bit_and_seeds_differ(name):
    make = (lambda **kw: AWGNChannel(**kw)) if name == "awgn" else FADING[name]
    ch = make(snr_db=10.0, train_snr_range_db=(0.0, 20.0)).train()
    s = latent((4, 8, 4, 4))
    gen = torch.Generator().manual_seed(9)
    state = gen.get_state()
    first = ch(s, gen)
    following = ch(s, gen)
    gen.set_state(state)  # a checkpoint restored
    assert torch.equal(ch(s, gen), first) and torch.equal(ch(s, gen), following)
    assert not torch.equal(first, following)
    assert not torch.equal(ch(s, torch.Generator().manual_seed(10)), ch(s, torch.Generator().manual_seed(11)))
    torch.manual_seed(12)  # no generator: torch's default one, which torch.manual_seed controls
    a = ch(s)
    torch.manual_seed(12)
    assert torch.equal(ch(s), a)


@pytest.mark.parametrize("name", ["rayleigh", "tdl"])
def test_sionna_seed_does_not_reach_our_draws(name):
    from trainables.channel.sionna_bridge import load_sionna

    ch = FADING[name](snr_db=10.0).eval()
    s = latent((4, 8, 4, 4))
    outputs = []
    with torch.random.fork_rng():  # setting Sionna's seed also reseeds torch's global generator
        for seed in (1, 2):
            load_sionna().config.seed = seed
            outputs.append(ch(s, torch.Generator().manual_seed(13)))
    assert torch.equal(*outputs)


@pytest.mark.parametrize("name", ["awgn", *FADING])
def test_eval_uses_snr_db_and_training_draws_from_the_range(name):
    make = (lambda **kw: AWGNChannel(**kw)) if name == "awgn" else FADING[name]
    ch = make(snr_db=30.0, train_snr_range_db=(0.0, 10.0))
    gen = torch.Generator().manual_seed(14)
    assert ch.eval().draw_snr(gen) == 30.0
    draws = [ch.train().draw_snr(gen) for _ in range(50)]
    assert all(0.0 <= d <= 10.0 for d in draws) and len(set(draws)) == 50
    if name != "awgn":
        s = latent((4, 8, 4, 4))
        assert float(ch.eval().transmit(s, gen).sigma2) == pytest.approx(1e-3)
        assert 1e-1 - 1e-7 <= float(ch.train().transmit(s, gen).sigma2) <= 1.0 + 1e-6


@pytest.mark.parametrize("name", list(FADING))
def test_gradients_reach_the_encoder_through_fading(name):
    s = latent((2, 8, 4, 4)).requires_grad_()
    FADING[name](snr_db=10.0).train()(s, torch.Generator().manual_seed(15)).square().sum().backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_importing_channels_does_not_load_sionna_and_loading_it_keeps_torch_seeded():
    code = (
        "import sys, torch\n"
        "import trainables.channel, trainables.codec\n"
        "assert 'sionna' not in sys.modules, 'sionna imported eagerly'\n"
        "from trainables.channel.sionna_bridge import load_sionna\n"
        "torch.manual_seed(0); a = torch.rand(3)\n"
        "torch.manual_seed(0); load_sionna(); b = torch.rand(3)\n"
        "assert torch.equal(a, b), 'importing sionna reseeded torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
