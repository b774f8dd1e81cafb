"""Channel models: power normalisation, AWGN, Rayleigh block fading and 3GPP TDL over OFDM.

Every channel is called as ``channel(s, generator)`` on the real view (2k reals per sample, see
``symbols``) and has ``.power``, ``.snr_db``, ``.train_snr_range_db`` and ``.draw_snr``. The fading
models import Sionna on first use; ``import trainables.channel`` and AWGN stay free of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.channel.awgn import AWGNChannel, noise_variance
from trainables.channel.base import Channel
from trainables.channel.fading import FadingChannel, Reception
from trainables.channel.power import mean_symbol_power, normalize_power
from trainables.channel.rayleigh import RayleighChannel
from trainables.channel.tdl import TDLChannel

if TYPE_CHECKING:
    from trainables.config import ChannelConfig


def build_channel(cfg: "ChannelConfig") -> Channel:
    """The channel module that ``cfg.model`` names, with the config's SNR and power."""
    common = dict(snr_db=cfg.snr_db, power=cfg.power, train_snr_range_db=cfg.train_snr_range_db)
    if cfg.model == "awgn":
        return AWGNChannel(**common)
    if cfg.model in ("rayleigh", "rayleigh_nocsi"):
        return RayleighChannel(**common, csi=cfg.model == "rayleigh", coherence_symbols=cfg.coherence_symbols)
    if cfg.model == "tdl":
        return TDLChannel(**common, profile=cfg.tdl_profile, delay_spread_ns=cfg.tdl_delay_spread_ns,
                          subcarriers=cfg.ofdm_subcarriers, subcarrier_spacing_khz=cfg.ofdm_subcarrier_spacing_khz,
                          carrier_frequency_ghz=cfg.carrier_frequency_ghz, speed_mps=cfg.speed_mps)
    raise ValueError(f"unknown channel model {cfg.model!r}")


__all__ = [
    "AWGNChannel", "Channel", "FadingChannel", "RayleighChannel", "Reception", "TDLChannel", "build_channel",
    "mean_symbol_power", "noise_variance", "normalize_power",
]
