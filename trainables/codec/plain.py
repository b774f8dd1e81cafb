"""The plain convolutional DeepJSCC autoencoder of Bourtsoulatze, Kurka and Gündüz (2019).

Five 5×5 convolutions with PReLU (two of stride 2) and the mirror of transposed convolutions
ending in a Sigmoid. Kept as the alternative architecture for the DeepJSCC baselines.
"""

from __future__ import annotations

from torch import nn


def _conv(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 5, stride=stride, padding=2), nn.PReLU(cout))


def _deconv(cin, cout, stride):
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 5, stride=stride, padding=2, output_padding=stride - 1), nn.PReLU(cout)
    )


class PlainEncoder(nn.Module):
    def __init__(self, latent_channels: int, width: int = 32):
        super().__init__()
        self.layers = nn.Sequential(
            _conv(3, width // 2, 2), _conv(width // 2, width, 2), _conv(width, width, 1), _conv(width, width, 1),
            nn.Conv2d(width, latent_channels, 5, padding=2),
        )

    def forward(self, x):
        return self.layers(x)


class PlainDecoder(nn.Module):
    def __init__(self, latent_channels: int, width: int = 32):
        super().__init__()
        self.layers = nn.Sequential(
            _deconv(latent_channels, width, 1), _deconv(width, width, 1), _deconv(width, width, 1),
            _deconv(width, width // 2, 2),
            nn.ConvTranspose2d(width // 2, 3, 5, stride=2, padding=2, output_padding=1), nn.Sigmoid(),
        )

    def forward(self, y):
        return self.layers(y)
