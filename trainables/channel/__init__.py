"""Channel models: power normalisation and complex AWGN."""

from trainables.channel.awgn import AWGNChannel, noise_variance
from trainables.channel.power import mean_symbol_power, normalize_power

__all__ = ["AWGNChannel", "mean_symbol_power", "noise_variance", "normalize_power"]
