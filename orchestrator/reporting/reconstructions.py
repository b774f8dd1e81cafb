"""The paper's Fig. 5 view: Kodak images sent through front members, with PSNR and MS-SSIM.

One PNG per condition, ``figures/reconstructions_<condition>.png``: the originals on top, then
one row per front member (at most ``max_members``, spread along the front from the most
accurate to the sharpest), each image transmitted at the member's own SNR. The numbers under
each image are :func:`trainables.metrics.psnr_per_image` and ``ms_ssim_per_image`` of that one
transmission, whose noise comes from a generator seeded with ``seed`` (repeatable). The models
were trained on 32×32 CIFAR-10; the paper trained on STL-10 for this figure, so expect blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .fronts import conditions
from .views import FIGURES_DIR, kn_label, label

DPI = 150
CAVEAT = ("The models were trained on 32×32 CIFAR-10 (the paper trained on STL-10 for its Fig. 5), "
          "so Kodak's large natural images are outside what they learned.")


@dataclass(frozen=True)
class ReconstructionGrid:
    condition: str
    path: Path
    images: list[str]  # Kodak file names, one per column
    trial_ids: list[str]  # one per member row
    psnr: np.ndarray  # dB, [member, image]
    ms_ssim: np.ndarray  # [member, image]
    labels: list[list[str]]  # the text under each reconstruction, [member][image]


def png_name(condition: str) -> str:
    return f"reconstructions_{condition}.png"


def annotation(psnr: float, ms_ssim: float) -> str:
    return f"{psnr:.2f} dB / MS-SSIM {ms_ssim:.4f}"


def load_kodak(folder: Path, n: int) -> list[tuple[str, torch.Tensor]]:
    """The first ``n`` PNGs of ``folder`` by name, as 1×3×H×W tensors in [0, 1]."""
    files = sorted(Path(folder).glob("*.png"))[:n]
    out = []
    for f in files:
        with Image.open(f) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        out.append((f.name, torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()))
    return out


def choose_members(front: pd.DataFrame, k: int) -> pd.DataFrame:
    """At most ``k`` members spread along the front, most accurate first (both ends kept)."""
    front = front.sort_values(["accuracy", "psnr"], ascending=False, kind="stable").reset_index(drop=True)
    if len(front) <= k:
        return front
    return front.iloc[np.unique(np.round(np.linspace(0, len(front) - 1, k)).astype(int))].reset_index(drop=True)


@torch.no_grad()
def transmit(model, x: torch.Tensor, seed: int) -> torch.Tensor:
    """One repeatable transmission: channel noise from a fresh generator seeded with ``seed``.

    ``model.transmit`` skips the classifier (it draws no noise, so ``model(x, g)[0]`` is the same
    image), which on a Kodak-sized input costs more than the codec.
    """
    generator = torch.Generator().manual_seed(seed)
    return model.transmit(x, generator) if hasattr(model, "transmit") else model(x, generator)[0]


def _scores(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[float, float]:
    from trainables.metrics import ms_ssim_per_image, psnr_per_image

    return float(psnr_per_image(x, x_hat)[0]), float(ms_ssim_per_image(x, x_hat)[0])


def _row_title(row) -> str:
    parts = [label(row["method"])]
    if not pd.isna(row["alpha1"]):
        parts.append(f"α1 {row['alpha1']:.2f}")
    if not pd.isna(row["tau"]):
        parts.append(f"τ {row['tau']:.2f}")
    return " ".join(parts) + f"\nacc {row['accuracy']:.3f}, {row['psnr']:.1f} dB\n{row['trial_id']}"


def _draw(condition: str, snr: float, kn: float, images, members: pd.DataFrame, recon, labels, path: Path) -> None:
    rows, cols = 1 + len(members), len(images)
    fig = Figure(figsize=(2.4 * cols + 1.0, 1.9 * rows + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, (name, x) in enumerate(images):
        for i in range(rows):
            ax = axes[i][j]
            img = x if i == 0 else recon[i - 1][j]
            ax.imshow(img[0].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(name if i == 0 else labels[i - 1][j], fontsize=6)
            if j == 0:
                ax.set_ylabel("original" if i == 0 else _row_title(members.iloc[i - 1]), fontsize=6)
    fig.suptitle(f"{condition}: Kodak through the front at SNR {snr:g} dB, k/n {kn_label(kn)} "
                 "(trained on 32×32 CIFAR-10; the paper's Fig. 5 used STL-10)", fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)


def reconstruction_grids(
    ranked: pd.DataFrame,
    load_model: Callable[[pd.Series], tuple[object | None, str]],
    kodak_dir: Path,
    out_dir: Path,
    n_images: int = 3,
    max_members: int = 4,
    seed: int = 0,
) -> tuple[list[ReconstructionGrid], list[str]]:
    """One grid per condition with a loadable front member; also notes on members skipped.

    ``load_model(row) -> (model or None, note)`` gives a member's
    :class:`~orchestrator.tracking.publish.TransmitAndClassify` (or anything called the same way).
    """
    images = load_kodak(kodak_dir, n_images)
    if not images:
        raise ValueError(f"kodak_dir {str(kodak_dir)!r} holds no PNG images")
    grids, notes = [], []
    front = ranked[ranked["pareto_rank"].eq(1).fillna(False).astype(bool)]
    for condition in conditions(ranked):
        chosen = choose_members(front[front["condition"] == condition], max_members)
        kept, recon, psnr, ms_ssim, labels = [], [], [], [], []
        for _, row in chosen.iterrows():
            model, note = load_model(row)
            if model is None:
                notes.append(f"{condition}/{row['trial_id']}: not in the reconstruction grid: {note}")
                continue
            outs = [transmit(model, x, seed) for _, x in images]
            scores = [_scores(x, x_hat) for (_, x), x_hat in zip(images, outs)]
            kept.append(row)
            recon.append(outs)
            psnr.append([p for p, _ in scores])
            ms_ssim.append([m for _, m in scores])
            labels.append([annotation(p, m) for p, m in scores])
        if not kept:
            continue
        members = pd.DataFrame(kept).reset_index(drop=True)
        path = Path(out_dir) / FIGURES_DIR / png_name(condition)
        _draw(condition, float(members["snr_db"].iloc[0]), float(members["kn_achieved"].iloc[0]), images, members,
              recon, labels, path)
        grids.append(ReconstructionGrid(condition, path, [n for n, _ in images], members["trial_id"].tolist(),
                                        np.array(psnr), np.array(ms_ssim), labels))
    return grids, notes


def markdown_section(grids: list[ReconstructionGrid]) -> str:
    """A section for ``report.md`` linking each grid (paths relative to the report folder)."""
    out = ["", "## Kodak reconstructions (Fig. 5 view)", "", CAVEAT + " Under each image: PSNR / MS-SSIM of "
           "that transmission at the member's own SNR.", ""]
    for g in grids:
        out += [f"### {g.condition}", "", f"![reconstructions {g.condition}]({FIGURES_DIR}/{g.path.name})", ""]
    return "\n".join(out)
