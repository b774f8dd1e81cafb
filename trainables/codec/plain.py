"""The plain convolutional DeepJSCC autoencoder of Bourtsoulatze, Kurka and Gündüz (2019).

5×5 convolutions with PReLU, the first two of stride 2, then a 5×5 convolution to the latent
channels; the decoder mirrors them with transposed convolutions ending in a Sigmoid. Kept as the
alternative architecture for the DeepJSCC baselines. ``widths`` are the hidden convolutions'
filters (``CodecConfig.plain_widths``); the original's are 16, 32, 32, 32.
"""

from __future__ import annotations

from torch import nn

ORIGINAL_WIDTHS = (16, 32, 32, 32)  # Bourtsoulatze et al. 2019


def _strides(widths: tuple[int, ...]) -> list[int]:
    """Two stride-2 layers make the ×4 downsampling every codec here shares (``bandwidth.DOWNSAMPLING``)."""
    if len(widths) < 2:
        raise ValueError(f"the plain codec needs at least 2 hidden widths, one per stride-2 layer (got {widths})")
    return [2, 2] + [1] * (len(widths) - 2)


def _conv(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 5, stride=stride, padding=2), nn.PReLU(cout))


def _deconv(cin, cout, stride):
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 5, stride=stride, padding=2, output_padding=stride - 1), nn.PReLU(cout)
    )


class PlainEncoder(nn.Module):
    def __init__(self, latent_channels: int, widths: tuple[int, ...] = ORIGINAL_WIDTHS):
        super().__init__()
        cins = (3, *widths[:-1])
        self.layers = nn.Sequential(
            *[_conv(cin, cout, s) for cin, cout, s in zip(cins, widths, _strides(widths))],
            nn.Conv2d(widths[-1], latent_channels, 5, padding=2),
        )

    def forward(self, x):
        return self.layers(x)


class PlainDecoder(nn.Module):
    def __init__(self, latent_channels: int, widths: tuple[int, ...] = ORIGINAL_WIDTHS):
        super().__init__()
        strides = _strides(widths)
        # Mirror of the encoder: layer i (w[i-1] → w[i], stride s[i]) becomes w[i] → w[i-1], stride s[i].
        self.layers = nn.Sequential(
            _deconv(latent_channels, widths[-1], 1),
            *[_deconv(widths[i], widths[i - 1], strides[i]) for i in range(len(widths) - 1, 0, -1)],
            nn.ConvTranspose2d(widths[0], 3, 5, stride=2, padding=2, output_padding=1), nn.Sigmoid(),
        )

    def forward(self, y):
        return self.layers(y)
