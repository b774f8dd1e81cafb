"""Semantic codecs: pick an architecture by name, so that search spaces stay plain data."""

from __future__ import annotations

from trainables.channel import Channel
from trainables.bandwidth import KN_TOLERANCE, Bandwidth, latent_channels
from trainables.codec.link import LinkOutput, SemanticLink
from trainables.codec.paper import SemanticDecoder, SemanticEncoder
from trainables.codec.plain import ORIGINAL_WIDTHS, PlainDecoder, PlainEncoder

ARCHITECTURES = ("paper", "plain")  # Fig. 1 of the paper; Bourtsoulatze et al.'s DeepJSCC


def build_link(arch: str, width: int, kn: float, image_size: tuple[int, int], channel: Channel, *,
               channel_coding_conv: bool = True, plain_widths: tuple[int, ...] = ORIGINAL_WIDTHS,
               kn_tolerance: float = KN_TOLERANCE) -> SemanticLink:
    """Encoder + channel + decoder for ``arch`` at the latent width that meets ``kn``.

    The keywords are the :class:`~trainables.config.CodecConfig` fields of the same names, with
    their defaults: ``width`` and ``channel_coding_conv`` shape ``paper``, ``plain_widths`` shapes ``plain``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown codec architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    c = latent_channels(kn, *image_size, tolerance=kn_tolerance).channels
    if arch == "paper":
        return SemanticLink(SemanticEncoder(c, width, channel_coding_conv), SemanticDecoder(c, width), channel)
    return SemanticLink(PlainEncoder(c, tuple(plain_widths)), PlainDecoder(c, tuple(plain_widths)), channel)


__all__ = [
    "ARCHITECTURES", "Bandwidth", "LinkOutput", "PlainDecoder", "PlainEncoder", "SemanticDecoder",
    "SemanticEncoder", "SemanticLink", "build_link", "latent_channels",
]
