"""Real short training runs on the synthetic CIFAR look-alike: learning, every method, divergence, resume.

The classifier is trained from scratch in stage 0 or loaded from a randomly initialised checkpoint
file; none of this depends on the real CIFAR-10 copy or the public weights.
"""

import json

import pytest
import torch

from trainables.config import build_trial_config
from trainables.reporter import FolderReporter, MemoryReporter
from trainables.training import TrialDiverged, run_trial
from trainables.training.checkpoint import load_checkpoint
from search_spaces import merge


def _config(data_dir, classifier_from, **over):
    """A tiny trial on ``data_dir``.

    ``classifier_from``: a checkpoint file (loaded, not fine-tuned), or a folder for the stage-0
    cache (a ResNet-20 trained from scratch for one epoch).
    """
    if classifier_from.is_file():
        clf = {"arch": "resnet20", "checkpoint": str(classifier_from)}
    else:
        clf = {"arch": "resnet20", "checkpoint": None, "finetune_epochs": 1, "cache_dir": str(classifier_from)}
    doc = {
        "method": "proposed",
        "data": {"search_dirs": [str(data_dir)], "train_per_class": 10, "tune_per_class": 5},
        "classifier": clf,
        "codec": {"width": 8, "kn": 1 / 6},
        "stage1": {"epochs": 1, "lr": 0.003}, "stage2": {"epochs": 1, "lr": 1e-3},
        "batch_size": 16, "threads": 2,
    }
    return build_trial_config(merge(doc, over))


@pytest.mark.slow
def test_short_run_learns(synthetic_cifar_dir, tmp_path):
    """1,000 training images, 4 + 3 epochs: L_rec falls in stage 1 and stage 2 lifts accuracy well above chance.

    CPU-sized, so the hyperparameters favour fast progress (alpha1 near 1, tau = 1, the
    backbone fine-tuned in stage 2); the paper's protocol needs hundreds of GPU epochs.
    The ResNet-20 starts from scratch (stage 0: 2 epochs on the clean training images).
    """
    cfg = _config(synthetic_cifar_dir, tmp_path / "stage0",
                  data={"train_per_class": 100, "tune_per_class": 50}, codec={"width": 32, "kn": 1 / 3},
                  classifier={"finetune_backbone": True, "finetune_epochs": 2},
                  stage1={"epochs": 4}, stage2={"epochs": 3},
                  loss={"alpha1": 0.95, "alpha2": 0.9, "tau": 1.0})
    rep = MemoryReporter()
    final = run_trial(cfg, rep)
    h = rep.history
    assert [m["epoch"] for m in h] == list(range(1, 8)) and [m["stage"] for m in h] == [1] * 4 + [2] * 3
    assert h[3]["loss_rec"] < 0.8 * h[0]["loss_rec"]  # L_rec falls during stage 1
    assert h[3]["loss_sem"] < h[0]["loss_sem"]
    assert final["accuracy"] >= 0.5, final  # chance is 0.10 on 500 balanced validation images; measured 0.95
    assert final["accuracy"] > h[3]["accuracy"] + 0.2  # stage 2 lifts it (measured 0.39 -> 0.95)
    assert final["psnr"] > 12.0 and 0 < final["ssim"] < 1


@pytest.mark.parametrize("method", ["proposed", "deepjscc", "deepjscc_ft", "deepsc"])
def test_each_method_trains_what_it_should(synthetic_cifar_dir, random_resnet20_checkpoint, method):
    cfg = _config(synthetic_cifar_dir, random_resnet20_checkpoint, method=method)
    keep = {}

    class Snapshots(MemoryReporter):
        def report(self, metrics, checkpoint_dir):
            super().report(metrics, checkpoint_dir)
            keep[metrics["epoch"]] = load_checkpoint(checkpoint_dir).modules

    rep = Snapshots()
    run_trial(cfg, rep)
    epochs = 1 if method == "deepjscc" else 2
    assert [m["epoch"] for m in rep.history] == list(range(1, epochs + 1))
    assert all(m["epochs_total"] == epochs for m in rep.history)
    for m in rep.history:
        assert all(torch.isfinite(torch.tensor(float(m[k]))) for k in ("accuracy", "psnr", "ssim", "loss"))
    from trainables.classifier import DownstreamModel, load_checkpoint as load_classifier

    initial = load_classifier(DownstreamModel("resnet20"), random_resnet20_checkpoint)  # what it started from
    after1 = keep[1]["downstream"]
    # Stage 1 never touches the classifier; the backbone stays frozen in every stage by default.
    assert torch.equal(after1["net.linear.weight"], initial.state_dict()["net.linear.weight"])
    last = keep[epochs]["downstream"]
    assert torch.equal(last["net.layer3.2.conv2.weight"], initial.state_dict()["net.layer3.2.conv2.weight"])
    if method in ("proposed", "deepjscc_ft", "deepsc"):
        assert not torch.equal(last["net.linear.weight"], after1["net.linear.weight"])  # stage 2 trains F_cls
    codec_key = "encoder.head.0.weight"
    if method == "deepsc":  # stage 2 keeps the codec frozen
        assert torch.equal(keep[2]["link"][codec_key], keep[1]["link"][codec_key])
    elif epochs == 2:
        assert not torch.equal(keep[2]["link"][codec_key], keep[1]["link"][codec_key])
    # Each epoch reports the loss terms its stage computes, and only those.
    stage_terms = {"proposed": [{"loss_sem"}, {"loss_task"}], "deepjscc": [set()],
                   "deepjscc_ft": [set(), {"loss_task"}], "deepsc": [{"loss_task"}, {"loss_task"}]}[method]
    for m, terms in zip(rep.history, stage_terms):
        assert {k for k in m if k in ("loss_sem", "loss_task")} == terms, (m["epoch"], sorted(m))


def test_divergence_fails_the_trial_with_a_reason(synthetic_cifar_dir, random_resnet20_checkpoint):
    cfg = _config(synthetic_cifar_dir, random_resnet20_checkpoint, loss={"tau": 1e-40, "alpha1": 0.0})
    with pytest.raises(TrialDiverged, match="loss is nan"):
        run_trial(cfg, MemoryReporter())


class _Interrupted(Exception):
    pass


class _CrashAfter(FolderReporter):
    """Writes epoch ``n`` like a normal run, then dies as a killed process would."""

    def __init__(self, out_dir, n):
        super().__init__(out_dir, resume=False)
        self.n = n

    def report(self, metrics, checkpoint_dir):
        super().report(metrics, checkpoint_dir)
        if metrics["epoch"] == self.n:
            raise _Interrupted


@pytest.mark.parametrize("stage1_epochs, crash_after", [(1, 1), (2, 1)], ids=["across-stages", "within-stage"])
def test_resume_is_bit_for_bit(synthetic_cifar_dir, tmp_path, stage1_epochs, crash_after):
    """N epochs straight == interrupted after epoch k, resumed from its checkpoint, run to the end.

    The classifier is trained from scratch in stage 0, so the resumed run also reads it back from the cache.
    """
    cfg = _config(synthetic_cifar_dir, tmp_path / "stage0", data={"hflip": True},
                  channel={"train_snr_range_db": [5, 20]}, stage1={"epochs": stage1_epochs})
    run_trial(cfg, FolderReporter(tmp_path / "a", resume=False))
    with pytest.raises(_Interrupted):
        run_trial(cfg, _CrashAfter(tmp_path / "b", crash_after))
    run_trial(cfg, FolderReporter(tmp_path / "b", resume=True))

    a = load_checkpoint(tmp_path / "a" / "checkpoint")
    b = load_checkpoint(tmp_path / "b" / "checkpoint")
    assert a.epoch == b.epoch == cfg.total_epochs
    for name in a.modules:
        for key, tensor in a.modules[name].items():
            assert torch.equal(tensor, b.modules[name][key]), (name, key)
    assert a.optimizer["state"].keys() == b.optimizer["state"].keys()
    for i, st in a.optimizer["state"].items():
        assert all(torch.equal(v, b.optimizer["state"][i][k]) for k, v in st.items() if torch.is_tensor(v))
    lines = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    wall = "train_images_per_s"
    assert [{k: v for k, v in m.items() if k != wall} for m in lines(tmp_path / "a")] == \
        [{k: v for k, v in m.items() if k != wall} for m in lines(tmp_path / "b")]
