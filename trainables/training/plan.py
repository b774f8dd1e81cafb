"""What each method trains in each stage, and with which loss (method-spec "Losses", "Baselines").

One table instead of ``if method == …`` branches scattered through the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from trainables.config import StageConfig, TrialConfig


@dataclass(frozen=True)
class StagePlan:
    stage: int  # 1 or 2
    hyper: StageConfig
    rec_weight: float  # α of α·L_rec + (1 − α)·L_other
    other: Literal["sem", "task", "none"]  # L_sem (eq. 7) or L_task (cross-entropy on F(x̂))
    train_link: bool  # encoder + decoder
    train_projection: bool
    train_classifier: bool  # F_cls
    train_backbone: bool  # F_b
    ce_class_normalised: bool = False  # L_task times 1/N_cls as eq. 11 prints it (LossConfig.ce_class_normalised)

    @property
    def epochs(self) -> int:
        return self.hyper.epochs


def stage_plans(cfg: TrialConfig) -> tuple[StagePlan, ...]:
    """The stages of ``cfg.method`` that have epochs, in order."""
    s1, s2, a1, a2 = cfg.stage1, cfg.stage2, cfg.alpha1, cfg.loss.alpha2
    bb = cfg.classifier.finetune_backbone
    finetune = StagePlan(2, s2, a2, "task", train_link=True, train_projection=False, train_classifier=True,
                         train_backbone=bb)
    plans = {
        # Stage 1 pre-trains codec + projection on α1·L_rec + (1−α1)·L_sem; stage 2 fine-tunes codec + F_cls.
        "proposed": (StagePlan(1, s1, a1, "sem", True, True, False, False), finetune),
        # DeepJSCC: L_rec only; the classifier stays as prepared in stage 0.
        "deepjscc": (StagePlan(1, s1, 1.0, "none", True, False, False, False),),
        # DeepJSCC-ft: DeepJSCC, then this method's stage 2.
        "deepjscc_ft": (StagePlan(1, s1, 1.0, "none", True, False, False, False), finetune),
        # DeepSC: task + observation losses through the frozen classifier, then codec frozen and
        # the classifier retrained with a small learning rate on the received images.
        "deepsc": (StagePlan(1, s1, a1, "task", True, False, False, False),
                   StagePlan(2, s2, 0.0, "task", train_link=False, train_projection=False, train_classifier=True,
                             train_backbone=bb)),
    }[cfg.method]
    return tuple(replace(p, ce_class_normalised=cfg.loss.ce_class_normalised) for p in plans if p.epochs > 0)


def plan_at(plans: tuple[StagePlan, ...], epoch: int) -> tuple[StagePlan, int]:
    """The plan for global epoch ``epoch`` (1-based) and the epoch within its stage."""
    start = 0
    for p in plans:
        if epoch <= start + p.epochs:
            return p, epoch - start
        start += p.epochs
    raise IndexError(f"epoch {epoch} is past the last stage")
