"""The method's losses: L_rec (eq. 8), the semantic contrastive loss (eq. 7), L_Task (eq. 11), their mixes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Eq. 8: the batch mean of (1/n)·‖x − x̂‖², i.e. the MSE over all pixels."""
    return F.mse_loss(x_hat.float(), x.float())


def semantic_contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, tau: float,
                              variant: str = "eq7") -> torch.Tensor:
    """Eq. 7 over a batch of L2-normalised projections.

    For image x: anchor q = P(F_b(x)), positive v+ = P(F_b(x̂)), negatives v_m = P(F_b(m)) for
    the *other original* images m of the batch (so the negatives are the other anchors).

    - ``"eq7"``: as printed, −log(exp(q·v+/τ) / Σ_{m≠x} exp(q·v_m/τ)); the positive is not in
      the denominator (a decoupled contrastive form).
    - ``"infonce"``: the standard InfoNCE, the positive included in the denominator
      (= cross-entropy over [positive; negatives]).
    """
    if anchors.shape[0] < 2:
        raise ValueError("the contrastive loss needs at least 2 images per batch (negatives)")
    # In fp32 even under bf16 autocast (which would run q @ q.T in bf16): at τ = 0.05 a bf16
    # similarity is off by up to ~0.08 in the logits, as large as the differences the loss ranks.
    with torch.autocast(anchors.device.type, enabled=False):
        return _contrastive_fp32(anchors.float(), positives.float(), tau, variant)


def _contrastive_fp32(q: torch.Tensor, v: torch.Tensor, tau: float, variant: str) -> torch.Tensor:
    pos = (q * v).sum(dim=1) / tau
    neg = (q @ q.T) / tau
    eye = torch.eye(len(q), dtype=torch.bool, device=q.device)
    neg = neg.masked_fill(eye, float("-inf"))
    if variant == "eq7":
        denom = torch.logsumexp(neg, dim=1)
    elif variant == "infonce":
        denom = torch.logsumexp(torch.cat([pos[:, None], neg], dim=1), dim=1)
    else:
        raise ValueError(f"unknown contrastive variant {variant!r}; choose 'eq7' or 'infonce'")
    return (denom - pos).mean()


def task_loss(logits: torch.Tensor, labels: torch.Tensor, class_normalised: bool = False) -> torch.Tensor:
    """Eq. 11: the batch mean of the cross-entropy of F(x̂), in fp32.

    Eq. 11 prints a factor 1/N_cls (N_cls = the logits' width); ``class_normalised`` applies it
    (``LossConfig.ce_class_normalised``). Without it, only the scale of L_Task against L_rec differs.
    """
    ce = F.cross_entropy(logits.float(), labels)
    return ce / logits.shape[1] if class_normalised else ce


def mix(alpha: float, rec: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Eq. 9 / 10: α·L_rec + (1 − α)·L_other, skipping a term whose weight is zero."""
    if alpha >= 1.0:
        return rec
    if alpha <= 0.0:
        return other
    return alpha * rec + (1.0 - alpha) * other
