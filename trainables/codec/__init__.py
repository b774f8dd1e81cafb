"""Semantic codecs: pick an architecture by name, so that search spaces stay plain data."""

from __future__ import annotations

from trainables.channel import AWGNChannel
from trainables.bandwidth import Bandwidth, latent_channels
from trainables.codec.link import LinkOutput, SemanticLink
from trainables.codec.paper import SemanticDecoder, SemanticEncoder
from trainables.codec.plain import PlainDecoder, PlainEncoder

ARCHITECTURES = {
    "paper": (SemanticEncoder, SemanticDecoder),
    "plain": (PlainEncoder, PlainDecoder),
}


def build_link(arch: str, width: int, kn: float, image_size: tuple[int, int], channel: AWGNChannel) -> SemanticLink:
    """Encoder + channel + decoder for ``arch`` at the latent width that meets ``kn``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown codec architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    enc_cls, dec_cls = ARCHITECTURES[arch]
    c = latent_channels(kn, *image_size).channels
    return SemanticLink(enc_cls(c, width), dec_cls(c, width), channel)


__all__ = [
    "ARCHITECTURES", "Bandwidth", "LinkOutput", "PlainDecoder", "PlainEncoder", "SemanticDecoder",
    "SemanticEncoder", "SemanticLink", "build_link", "latent_channels",
]
