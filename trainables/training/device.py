"""Device choice and numerics: CUDA with bf16 autocast and channels_last, else exact fp32 on CPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    device: torch.device

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        if self.is_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.is_cuda else module

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.is_cuda else x


def pick_runtime(device: str = "auto", threads: int | None = None) -> Runtime:
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
        return Runtime(torch.device("cuda"))
    return Runtime(torch.device("cpu"))
