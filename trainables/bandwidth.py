"""From a requested bandwidth ratio k/n to the codec's latent channels, and the ratio achieved.

Convention (method-spec): k counts *complex* channel symbols and n = c·h·w source scalars.
Both architectures downsample by 4 in each direction, so an h×w image becomes an
(h/4)×(w/4) latent of C real channels carrying C·(h/4)·(w/4)/2 complex symbols.
Hence C = 2·k/(h'·w') = 2·(k/n)·c·16 = 96·(k/n) for RGB, independent of the image size.
C is an integer, so the achieved k/n can differ from the requested one; reports use the achieved.
"""

from __future__ import annotations

from dataclasses import dataclass

DOWNSAMPLING = 4  # two stride-2 stages in every encoder here
KN_TOLERANCE = 0.25  # default of CodecConfig.kn_tolerance: a request further than this (relative) is refused


@dataclass(frozen=True)
class Bandwidth:
    channels: int  # real latent channels C
    symbols: int  # complex channel symbols k per image
    source_dim: int  # n = c·h·w
    kn_requested: float

    @property
    def kn_achieved(self) -> float:
        return self.symbols / self.source_dim


def latent_channels(kn: float, height: int, width: int, image_channels: int = 3,
                    tolerance: float = KN_TOLERANCE) -> Bandwidth:
    """Map a requested k/n to C latent channels; raise ``ValueError`` if it cannot be met.

    ``tolerance`` is the largest relative gap between the requested and the achieved k/n.
    """
    if not 0.0 < kn <= 1.0:
        raise ValueError(f"k/n must be in (0, 1] (got {kn})")
    if height % DOWNSAMPLING or width % DOWNSAMPLING:
        raise ValueError(f"image size {height}x{width} is not divisible by {DOWNSAMPLING}")
    latent_area = (height // DOWNSAMPLING) * (width // DOWNSAMPLING)
    n = image_channels * height * width
    exact = 2 * kn * n / latent_area
    channels = max(1, round(exact))
    if channels * latent_area % 2:
        channels += 1  # an odd count of real values cannot form whole complex symbols
    symbols = channels * latent_area // 2
    achieved = symbols / n
    if abs(achieved - kn) / kn > tolerance:
        raise ValueError(
            f"k/n = {kn:.5g} is unreachable for {height}x{width} images: the nearest is "
            f"{achieved:.5g} (C = {channels} latent channels), more than {100 * tolerance:.3g}% away"
        )
    return Bandwidth(channels=channels, symbols=symbols, source_dim=n, kn_requested=kn)
