"""Device choice and numerics: CUDA trains under bf16 autocast with channels_last, else exact fp32 on CPU.

Training and measuring follow different rules. Training on CUDA uses bf16 autocast (speed); the
numbers a study compares (accuracy, PSNR, SSIM) are computed in exact fp32 under :meth:`Runtime.exact`,
with TF32 off as well, so that a GPU trial scores its reconstructions like a CPU trial does.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    compile: bool = False  # torch.compile the models' forward passes (see ``loop.compile_models``)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        """The training numerics: bf16 autocast on CUDA, plain fp32 on CPU."""
        if self.is_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def exact(self):
        """Exact fp32 for evaluation: autocast off and, on CUDA, no TF32 in convolutions or matmuls."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(self.device.type, enabled=False))
        if self.is_cuda:
            stack.enter_context(_ieee_fp32())
        return stack

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.is_cuda else module

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.is_cuda else x

    def stopwatch(self) -> "Stopwatch":
        return Stopwatch(self.is_cuda)


class Stopwatch:
    """Wall time of GPU work: CUDA events on CUDA (``perf_counter`` would stop before the queue drains).

    Started on creation; :meth:`seconds` waits for the work queued so far, once, at the end.
    """

    def __init__(self, cuda: bool):
        self.cuda = cuda
        if cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()

    def seconds(self) -> float:
        if not self.cuda:
            return time.perf_counter() - self._t0
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self._start.elapsed_time(end) / 1e3


@contextlib.contextmanager
def _ieee_fp32():
    """TF32 off for cuDNN convolutions and cuBLAS matmuls, restored afterwards.

    torch ≥ 2.9 has ``fp32_precision`` settings (mixing them with the legacy ``allow_tf32`` flags is
    an error there), older versions only the flags.
    """
    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    mm = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if conv is not None and mm is not None:
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            torch.backends.cudnn.conv.fp32_precision = conv
            torch.backends.cuda.matmul.fp32_precision = mm
        return
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def pick_runtime(device: str = "auto", threads: int | None = None, compile: bool = False) -> Runtime:
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: autotuned convolutions pay off after one batch
        return Runtime(torch.device("cuda"), compile)
    return Runtime(torch.device("cpu"), compile)
