"""The k/n → latent-channel table and the codecs' shapes (CIFAR 32×32 and Kodak 768×512)."""

import pytest
import torch

from trainables.bandwidth import latent_channels
from trainables.channel import AWGNChannel
from trainables.codec import build_link


@pytest.mark.parametrize("kn, channels, achieved", [
    (1 / 48, 2, 1 / 48), (1 / 24, 4, 1 / 24), (1 / 12, 8, 1 / 12), (1 / 6, 16, 1 / 6),
    (1 / 2.5, 38, 38 / 96),  # the spec's example: not an integer C, report 1/2.53
])
def test_kn_table_of_the_spec(kn, channels, achieved):
    bw = latent_channels(kn, 32, 32)
    assert bw.channels == channels
    assert bw.kn_achieved == pytest.approx(achieved)
    assert bw.symbols == channels * 64 // 2  # 8x8 latent, 2 reals per complex symbol
    assert latent_channels(kn, 512, 768).channels == channels  # independent of image size


def test_kn_1_over_2_5_reports_achieved_not_requested():
    bw = latent_channels(0.4, 32, 32)
    assert 1 / bw.kn_achieved == pytest.approx(2.526, abs=1e-3)
    assert bw.kn_requested == 0.4


@pytest.mark.parametrize("kn, h, w, match", [
    (0.0, 32, 32, r"\(0, 1\]"), (1.5, 32, 32, r"\(0, 1\]"), (0.001, 32, 32, "unreachable"),
    (1 / 12, 30, 32, "divisible"),
])
def test_unreachable_bandwidth_is_an_error(kn, h, w, match):
    with pytest.raises(ValueError, match=match):
        latent_channels(kn, h, w)


def test_odd_latent_area_rounds_to_whole_complex_symbols():
    bw = latent_channels(5 / 96, 20, 20)  # 5x5 latent: C = 5 gives 125 reals, not whole symbols
    assert bw.channels == 6 and bw.symbols == 75 and bw.kn_achieved == pytest.approx(6 / 96)
    with pytest.raises(ValueError, match="unreachable"):
        latent_channels(1 / 96, 12, 12)  # 3x3 latent: C = 1 -> odd, C = 2 is twice the request


@pytest.mark.parametrize("arch", ["paper", "plain"])
@pytest.mark.parametrize("h, w", [(32, 32), (512, 768)])
def test_codec_shapes(arch, h, w):
    link = build_link(arch, 8, 1 / 12, (h, w), AWGNChannel(20.0)).eval()
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        out = link(x, torch.Generator().manual_seed(0))
    assert out.symbols.shape == (1, 8, h // 4, w // 4)
    assert out.x_hat.shape == x.shape
    assert 0.0 <= out.x_hat.min() and out.x_hat.max() <= 1.0
    assert out.symbols.flatten(1).pow(2).sum(1).item() == pytest.approx(8 * h * w / 16 / 2, rel=1e-4)
