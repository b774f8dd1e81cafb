"""Image-quality metrics, defined once (method-spec "Metrics") and used everywhere.

PSNR: per image 10·log10(1/MSE) on [0,1] images with x̂ clamped to [0,1], then averaged
over images. SSIM for small images; MS-SSIM (5 scales) only for large ones such as Kodak.
"""

from __future__ import annotations

import torch

PSNR_DEFINITION = "per-image 10*log10(1/MSE) on [0,1] images, reconstruction clamped to [0,1], mean over images"
_MIN_MSE = 1e-10  # caps a perfect reconstruction at 100 dB instead of +inf


def psnr_per_image(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    mse = (x_hat.float().clamp(0, 1) - x.float()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(_MIN_MSE))


def ssim_per_image(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import structural_similarity_index_measure as _ssim  # 3 s to import

    return _ssim(x_hat.float().clamp(0, 1), x.float(), data_range=1.0, reduction="none")


def ms_ssim_per_image(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as _ms_ssim

    return _ms_ssim(x_hat.float().clamp(0, 1), x.float(), data_range=1.0, reduction="none")
