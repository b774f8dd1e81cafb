"""Sionna, imported lazily and made to draw from the caller's ``torch.Generator``.

Our contract: every random variate of a channel comes from the generator the trial passes, so
restoring that generator from a checkpoint replays the same draws bit for bit (on CPU). Sionna's
blocks instead draw from a process-wide generator, ``sionna.phy.config.torch_rng(device)``, read
through the ``torch_rng`` property every Sionna object has. The bridge:

* functions that take a generator (``sionna.phy.utils.complex_normal``) get ours;
* blocks that read ``self.torch_rng`` (e.g. ``tr38901.TDL``) are subclassed with
  :func:`caller_rng` so that property returns the generator set for the call.

Sionna's random helpers ignore any generator while ``torch.compile`` traces them; the channel
runs eagerly (``training.loop.compile_models`` leaves it out), so that does not arise here.
"""

from __future__ import annotations

import contextlib
import functools

import torch


@functools.cache
def load_sionna():
    """``sionna.phy``, imported once, leaving torch's global RNG states as they were.

    Importing ``sionna.phy`` builds its config singleton with ``seed=None``, which reseeds
    ``torch.default_generator`` and every CUDA default generator at random: imported after
    ``torch.manual_seed(cfg.seed)`` it would silently make a trial's initial weights irreproducible.
    The import takes about 3 s (2.6–3.6 s measured on a 2-core CPU machine, torch already loaded).
    """
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        import sionna.phy
    return sionna.phy


def generator_for(device: torch.device, generator: torch.Generator | None) -> torch.Generator:
    """The caller's generator, or torch's default one for ``device`` (as ``torch.randn`` would use).

    Passing ``None`` on to Sionna would select Sionna's own generator instead, which
    ``torch.manual_seed`` does not control.
    """
    if generator is not None:
        return generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def sionna_device(device: torch.device) -> str:
    """Sionna names devices ``cpu`` / ``cuda:N`` (it refuses a bare ``cuda``)."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


@functools.cache
def caller_rng(block_cls: type) -> type:
    """A subclass of the Sionna ``block_cls`` whose ``torch_rng`` is the generator given to :func:`drawing_from`."""

    class CallerRNG(block_cls):
        _generator: torch.Generator | None = None

        @property
        def torch_rng(self) -> torch.Generator:
            if self._generator is None:
                raise RuntimeError("call this block inside drawing_from(block, generator)")
            return self._generator

    CallerRNG.__name__ = CallerRNG.__qualname__ = f"CallerRNG{block_cls.__name__}"
    return CallerRNG


@contextlib.contextmanager
def drawing_from(block, generator: torch.Generator):
    """Within the block, ``block`` (made by :func:`caller_rng`) draws from ``generator``."""
    block._generator = generator
    try:
        yield block
    finally:
        block._generator = None
