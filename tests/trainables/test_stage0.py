"""Stage 0: the classifier is fine-tuned once per key and reused from the on-disk cache."""

from pathlib import Path

import torch

from trainables.classifier import DownstreamModel, load_checkpoint, locate_public_checkpoint
from trainables.config import ClassifierConfig, DataConfig
from trainables.data import load_splits
from trainables.training.device import pick_runtime
from trainables.training.stage0 import prepare_downstream


def test_finetuned_classifier_is_cached_by_key_and_reused(cifar_dir, models_dir, tmp_path):
    data = DataConfig(search_dirs=(str(cifar_dir),), train_per_class=4, val_per_class=2)
    train = load_splits(data, seed=0, with_test=False).train
    rt = pick_runtime("cpu", threads=2)
    cfg = ClassifierConfig(arch="resnet20", search_dirs=(str(models_dir),), finetune_epochs=1,
                           finetune_lr=0.01, cache_dir=str(tmp_path / "cache"))

    first = prepare_downstream(cfg, data, train, seed=0, rt=rt)
    cached = list(Path(cfg.cache_dir).glob("resnet20-*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    public = load_checkpoint(DownstreamModel("resnet20"), locate_public_checkpoint("resnet20", cfg.search_dirs))
    assert not torch.equal(first.net.linear.weight, public.net.linear.weight)  # it was fine-tuned
    assert not first.training  # handed over in eval mode

    again = prepare_downstream(cfg, data, train, seed=0, rt=rt)  # same key: loaded, not retrained
    assert cached[0].stat().st_mtime_ns == stamp
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name

    other = prepare_downstream(cfg.model_copy(update={"finetune_lr": 0.02}), data, train, seed=0, rt=rt)
    assert len(list(Path(cfg.cache_dir).glob("resnet20-*.pt"))) == 2  # a new key, a new entry
    assert not torch.equal(other.net.linear.weight, first.net.linear.weight)


def test_no_finetuning_means_the_public_weights_and_no_cache(cifar_dir, models_dir, tmp_path):
    data = DataConfig(search_dirs=(str(cifar_dir),), train_per_class=2, val_per_class=1)
    train = load_splits(data, seed=0, with_test=False).train
    cfg = ClassifierConfig(arch="resnet20", search_dirs=(str(models_dir),), cache_dir=str(tmp_path / "cache"))
    model = prepare_downstream(cfg, data, train, seed=0, rt=pick_runtime("cpu"))
    public = load_checkpoint(DownstreamModel("resnet20"), locate_public_checkpoint("resnet20", cfg.search_dirs))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), public.state_dict().values()))
    assert not (tmp_path / "cache").exists()
