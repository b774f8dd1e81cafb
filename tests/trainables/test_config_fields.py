"""Each formerly hidden choice of ``trainables`` is a config field: it changes what is built, and bad values are refused.

Parameter counts are measured at k/n = 1/12 on 32×32 images (C = 8 latent channels).
"""

from __future__ import annotations

import pickle

import pytest
import torch

from trainables.channel import AWGNChannel
from trainables.classifier import DownstreamModel
from trainables.codec import build_link
from trainables.codec.plain import ORIGINAL_WIDTHS
from trainables.config import ConfigError, TrialConfig, build_trial_config
from trainables.data import ImageSet
from trainables.losses import task_loss
from trainables.training.checkpoint import (
    STATE_FILE, TrialState, capture_rng, load_checkpoint, save_checkpoint,
)
from trainables.training.device import Runtime
from trainables.training.loop import train_epoch
from trainables.training.plan import stage_plans
from trainables.training.trial import build_models, make_optimizer

CPU = Runtime(torch.device("cpu"))


def _cfg(**sections) -> TrialConfig:
    return build_trial_config({"codec": {"kn": 1 / 12}, **sections})


def _link(cfg: TrialConfig):
    """The link a trial of ``cfg`` transmits over: every codec field passed to ``build_link``."""
    c = cfg.codec
    return build_link(c.arch, c.width, c.kn, cfg.data.image_size, AWGNChannel(cfg.channel.snr_db),
                      channel_coding_conv=c.channel_coding_conv, plain_widths=c.plain_widths,
                      kn_tolerance=c.kn_tolerance)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _refused(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_trial_config(doc)
    return [path for path, _ in info.value.problems]


# -- codec.channel_coding_conv ---------------------------------------------------------------------

def test_channel_coding_conv_is_the_extra_3x3_conv_of_the_encoder():
    with_conv, without = _link(_cfg()), _link(_cfg(codec={"kn": 1 / 12, "channel_coding_conv": False}))
    assert _params(with_conv) == 12_231_435 and _params(without) == 11_640_843  # width 256
    assert _params(with_conv) - _params(without) == 256 * 256 * 9 + 2 * 256 + 256  # conv + BN + PReLU
    assert _params(with_conv.decoder) == _params(without.decoder)  # the decoder has no counterpart
    x = torch.rand(2, 3, 32, 32)
    assert without.eval()(x, torch.Generator().manual_seed(0)).symbols.shape == (2, 8, 8, 8)


def test_channel_coding_conv_keeps_the_state_dict_keys_of_earlier_checkpoints():
    keys = build_link("paper", 8, 1 / 12, (32, 32), AWGNChannel(20.0)).encoder.state_dict().keys()
    assert "channel_coding.1.weight" in keys and "channel_coding.0.0.weight" in keys


def test_channel_coding_conv_takes_booleans_only():
    assert _refused({"codec": {"channel_coding_conv": "sometimes"}}) == ["codec.channel_coding_conv"]


# -- codec.kn_tolerance ----------------------------------------------------------------------------

def test_kn_tolerance_decides_whether_a_kn_is_reachable():
    # k/n = 1/64 needs C = 1.5 latent channels: the nearest, C = 2, is k/n = 1/48, 33 % away.
    with pytest.raises(ConfigError, match="unreachable"):
        build_trial_config({"codec": {"kn": 1 / 64}})
    cfg = build_trial_config({"codec": {"kn": 1 / 64, "kn_tolerance": 0.4}})
    assert cfg.kn_achieved == pytest.approx(1 / 48)
    assert _link(cfg).eval()(torch.rand(1, 3, 32, 32)).symbols.shape[1] == 2
    with pytest.raises(ValueError, match="unreachable"):
        build_link("paper", 8, 1 / 64, (32, 32), AWGNChannel(20.0))  # build_link's default is the field's


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, "a lot"])
def test_kn_tolerance_outside_the_open_unit_interval_is_refused(bad):
    assert _refused({"codec": {"kn_tolerance": bad}}) == ["codec.kn_tolerance"]


# -- codec.plain_widths ----------------------------------------------------------------------------

def test_plain_defaults_to_bourtsoulatze_widths_and_ignores_width():
    plain = _cfg(codec={"arch": "plain", "kn": 1 / 12})
    assert plain.codec.plain_widths == ORIGINAL_WIDTHS == (16, 32, 32, 32)
    assert _params(_link(plain)) == 143_659  # encoder 71,832 + decoder 71,827
    wider = _cfg(codec={"arch": "plain", "kn": 1 / 12, "width": 8})
    assert _params(_link(wider)) == 143_659


def test_plain_widths_reach_the_link():
    # (128, 256, 256, 256) is the layout the old plain codec built from width 256.
    cfg = _cfg(codec={"arch": "plain", "kn": 1 / 12, "plain_widths": [128, 256, 256, 256]})
    assert _params(_link(cfg)) == 8_317_195


@pytest.mark.parametrize("widths", [(8, 12), (8, 12, 16, 16, 16, 16)])
def test_plain_widths_of_any_depth_keep_the_shapes(widths):
    cfg = _cfg(codec={"arch": "plain", "kn": 1 / 6, "plain_widths": list(widths)})
    out = _link(cfg).eval()(torch.rand(2, 3, 32, 32), torch.Generator().manual_seed(0))
    assert out.symbols.shape == (2, 16, 8, 8) and out.x_hat.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("bad, path", [
    ([32], "codec.plain_widths"), ([], "codec.plain_widths"), ([16, 0, 32], "codec.plain_widths.1"),
    ("wide", "codec.plain_widths"),
])
def test_bad_plain_widths_are_refused(bad, path):
    assert _refused({"codec": {"plain_widths": bad}}) == [path]


# -- loss.ce_class_normalised ----------------------------------------------------------------------

def test_class_normalised_cross_entropy_is_one_tenth_for_cifar10():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(16, 10, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    plain = task_loss(logits, labels)
    assert torch.equal(plain, torch.nn.functional.cross_entropy(logits, labels))  # the default: as before
    assert torch.equal(task_loss(logits, labels, class_normalised=True), plain / 10)


def _stage2_task_loss(normalised: bool) -> float:
    """The mean L_task of one stage-2 batch of a fresh, seeded model (recorded before its step)."""
    cfg = TrialConfig(codec={"width": 8, "kn": 1 / 6}, classifier={"arch": "resnet20", "checkpoint": "auto"},
                      loss={"ce_class_normalised": normalised}, device="cpu")
    torch.manual_seed(0)
    models = build_models(cfg, DownstreamModel("resnet20"), CPU)
    plan = stage_plans(cfg)[1]
    assert plan.other == "task" and plan.ce_class_normalised is normalised
    gen = torch.Generator().manual_seed(1)
    ds = ImageSet(torch.randint(0, 256, (8, 3, 32, 32), generator=gen, dtype=torch.uint8),
                  torch.randint(0, 10, (8,), generator=gen))
    out = train_epoch(models, plan, make_optimizer(models, plan)[0], ds, 8, False, torch.Generator().manual_seed(2),
                      torch.Generator().manual_seed(3), CPU, cfg.loss.tau, cfg.loss.contrastive)
    return out["loss_task"]


def test_ce_class_normalised_reaches_the_training_loop():
    assert _stage2_task_loss(True) == pytest.approx(_stage2_task_loss(False) / 10, rel=1e-6)


def test_ce_class_normalised_reaches_every_task_stage():
    cfg = _cfg(method="deepsc", loss={"ce_class_normalised": True})
    assert [p.other for p in stage_plans(cfg)] == ["task", "task"]
    assert all(p.ce_class_normalised for p in stage_plans(cfg))
    assert not any(p.ce_class_normalised for p in stage_plans(_cfg(method="deepsc")))


def test_ce_class_normalised_takes_booleans_only():
    assert _refused({"loss": {"ce_class_normalised": "sometimes"}}) == ["loss.ce_class_normalised"]


# -- classifier.allow_untrained --------------------------------------------------------------------

def test_an_untrained_classifier_is_refused_naming_the_checkpoint():
    with pytest.raises(ConfigError) as info:
        build_trial_config({"classifier": {"checkpoint": None, "finetune_epochs": 0}})
    [(path, reason)] = info.value.problems
    assert path == "classifier.checkpoint" and "untrained" in reason and "allow_untrained" in reason


@pytest.mark.parametrize("classifier", [
    {"checkpoint": None, "finetune_epochs": 0, "allow_untrained": True},
    {"checkpoint": None, "finetune_epochs": 1},
    {"checkpoint": "auto", "finetune_epochs": 0},
    {"checkpoint": "/some/file.th"},
])
def test_a_trained_or_explicitly_untrained_classifier_is_accepted(classifier):
    assert build_trial_config({"classifier": classifier}).classifier.checkpoint == classifier["checkpoint"]


def test_allow_untrained_takes_booleans_only():
    assert _refused({"classifier": {"allow_untrained": "sometimes"}}) == ["classifier.allow_untrained"]


# -- trial checkpoints load with weights_only=True ---------------------------------------------------

def _trained_state() -> TrialState:
    cfg = TrialConfig(codec={"width": 8, "kn": 1 / 6}, device="cpu")
    torch.manual_seed(0)
    models = build_models(cfg, DownstreamModel("resnet20"), CPU)
    plan = stage_plans(cfg)[0]
    opt, sched = make_optimizer(models, plan)
    models.link(torch.rand(4, 3, 32, 32)).x_hat.mean().backward()
    opt.step()
    sched.step()
    return TrialState(epoch=1, stage=1, modules={k: m.state_dict() for k, m in models.modules().items()},
                      optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                      rng=capture_rng(torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)),
                      history=[{"epoch": 1, "stage": 1, "accuracy": 0.1, "psnr": 12.5, "lr": 0.01}])


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_trial_checkpoint_round_trips_with_weights_only(tmp_path):
    state = _trained_state()
    save_checkpoint(tmp_path, state, {"seed": 0})
    assert set(torch.load(tmp_path / STATE_FILE, weights_only=True)) == {"format", *state.__dict__}
    loaded = load_checkpoint(tmp_path)
    assert all(_same(getattr(state, k), getattr(loaded, k)) for k in state.__dict__)


class _NotPlain:
    pass


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    state = _trained_state()
    state.history.append({"note": _NotPlain()})
    save_checkpoint(tmp_path, state, {})
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        load_checkpoint(tmp_path)
