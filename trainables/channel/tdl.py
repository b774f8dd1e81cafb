"""3GPP TR 38.901 tapped-delay-line fading over OFDM, equalised per resource element with perfect CSI.

An image's k symbols fill a resource grid of ``subcarriers`` × ceil(k / subcarriers) OFDM symbols,
frequency first; the unused tail of the last OFDM symbol is left empty. One TDL realisation per
image (one slot): Sionna's ``tr38901.TDL`` draws the taps (sum of sinusoids, its power-delay
profiles and Doppler), ``channel.GenerateOFDMChannel`` turns them into the frequency response
(``cir_to_ofdm_channel``) at ``channel.subcarrier_frequencies`` of an ``ofdm.ResourceGrid``, with
no cyclic-prefix overhead modelled (it is assumed to cover the delay spread, so no ISI). The
response is not normalised per image: E|h|² = 1 on average, so ``snr_db`` is the average SNR as
for Rayleigh fading. Noise and the LMMSE receiver are :class:`FadingChannel`'s.

Bridge: TDL draws from ``self.torch_rng``; :func:`caller_rng` makes that the caller's generator.
The Sionna blocks stay out of this module's children (their buffers would enter checkpoints) in
a cache per configuration and device.
"""

from __future__ import annotations

import functools
import math

import torch

from trainables.channel.fading import FadingChannel
from trainables.channel.sionna_bridge import caller_rng, drawing_from, load_sionna, sionna_device


@functools.lru_cache(maxsize=32)
def _ofdm_response(profile: str, delay_spread: float, carrier_frequency: float, speed: float,
                   subcarriers: int, spacing: float, ofdm_symbols: int, device: str):
    phy = load_sionna()
    tdl = caller_rng(phy.channel.tr38901.TDL)(
        profile, delay_spread=delay_spread, carrier_frequency=carrier_frequency,
        min_speed=speed, max_speed=speed, device=device)
    grid = phy.ofdm.ResourceGrid(num_ofdm_symbols=ofdm_symbols, fft_size=subcarriers,
                                 subcarrier_spacing=spacing, device=device)
    return tdl, phy.channel.GenerateOFDMChannel(tdl, grid, normalize_channel=False, device=device)


class TDLChannel(FadingChannel):
    """TDL-``profile`` (A–C NLoS, D–E LoS) with an RMS delay spread, over an OFDM grid."""

    def __init__(self, snr_db: float, power: float = 1.0, train_snr_range_db: tuple[float, float] | None = None,
                 csi: bool = True, profile: str = "A", delay_spread_ns: float = 100.0, subcarriers: int = 64,
                 subcarrier_spacing_khz: float = 30.0, carrier_frequency_ghz: float = 3.5, speed_mps: float = 0.0):
        super().__init__(snr_db, power, train_snr_range_db, csi)
        self.profile = profile
        self.delay_spread_ns = delay_spread_ns
        self.subcarriers = subcarriers
        self.subcarrier_spacing_khz = subcarrier_spacing_khz
        self.carrier_frequency_ghz = carrier_frequency_ghz
        self.speed_mps = speed_mps

    def gains(self, batch: int, k: int, device: torch.device, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        tdl, response = _ofdm_response(
            self.profile, self.delay_spread_ns * 1e-9, self.carrier_frequency_ghz * 1e9, self.speed_mps,
            self.subcarriers, self.subcarrier_spacing_khz * 1e3, math.ceil(k / self.subcarriers),
            sionna_device(device))
        with drawing_from(tdl, generator):
            h = response(batch)  # [B, rx, rx ant, tx, tx ant, OFDM symbols, subcarriers], all ones but the last two
        return h.reshape(batch, -1)[:, :k], 1
