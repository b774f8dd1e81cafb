"""Stage 0: the classifier is fine-tuned once per key and reused from the on-disk cache.

On the synthetic CIFAR look-alike, with a ResNet-20 trained from scratch or loaded from a randomly
initialised checkpoint file: the cache does not depend on the public weights.
"""

from pathlib import Path

import torch

from trainables.classifier import DownstreamModel, load_checkpoint
from trainables.config import ClassifierConfig, DataConfig
from trainables.data import load_splits
from trainables.training.device import pick_runtime
from trainables.training.stage0 import prepare_downstream


def test_finetuned_classifier_is_cached_by_key_and_reused(synthetic_cifar_dir, tmp_path):
    data = DataConfig(search_dirs=(str(synthetic_cifar_dir),), train_per_class=4, tune_per_class=2)
    train = load_splits(data, with_final=False).train
    rt = pick_runtime("cpu", threads=2)
    cfg = ClassifierConfig(arch="resnet20", checkpoint=None, finetune_epochs=1,
                           finetune_lr=0.01, cache_dir=str(tmp_path / "cache"))

    torch.manual_seed(0)
    first = prepare_downstream(cfg, data, train, seed=0, rt=rt)  # from scratch: a random init, trained
    cached = list(Path(cfg.cache_dir).glob("resnet20-*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    torch.manual_seed(0)
    initial = DownstreamModel("resnet20")  # the same random init, untrained
    assert not torch.equal(first.net.linear.weight, initial.net.linear.weight)  # it was trained
    assert not first.training  # handed over in eval mode

    torch.manual_seed(1)  # another random init: what it starts from does not matter, the cache is read
    again = prepare_downstream(cfg, data, train, seed=0, rt=rt)  # same key: loaded, not retrained
    assert cached[0].stat().st_mtime_ns == stamp
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name

    other = prepare_downstream(cfg.model_copy(update={"finetune_lr": 0.02}), data, train, seed=0, rt=rt)
    assert len(list(Path(cfg.cache_dir).glob("resnet20-*.pt"))) == 2  # a new key, a new entry
    assert not torch.equal(other.net.linear.weight, first.net.linear.weight)


def test_no_finetuning_means_the_checkpoint_weights_and_no_cache(synthetic_cifar_dir, random_resnet20_checkpoint,
                                                                 tmp_path):
    data = DataConfig(search_dirs=(str(synthetic_cifar_dir),), train_per_class=2, tune_per_class=1)
    train = load_splits(data, with_final=False).train
    cfg = ClassifierConfig(arch="resnet20", checkpoint=str(random_resnet20_checkpoint),
                           cache_dir=str(tmp_path / "cache"))
    model = prepare_downstream(cfg, data, train, seed=0, rt=pick_runtime("cpu"))
    saved = load_checkpoint(DownstreamModel("resnet20"), random_resnet20_checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved.state_dict().values()))
    assert not (tmp_path / "cache").exists()


def test_the_cache_key_covers_the_data_source_bytes_and_rows(synthetic_cifar_dir, tmp_path):
    """A classifier fine-tuned on one copy of CIFAR-10 is not reused for another copy or subset."""
    import shutil

    import numpy as np

    from trainables.training.stage0 import stage0_key

    cfg = ClassifierConfig(arch="resnet20", checkpoint=None, finetune_epochs=1)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("train.npz", "test.npz"):
        shutil.copy(synthetic_cifar_dir / name, copy / name)
    base = DataConfig(search_dirs=(str(copy),), source="npz", train_per_class=4)
    key = stage0_key(cfg, base, 0, None)
    assert stage0_key(cfg, DataConfig(search_dirs=(str(synthetic_cifar_dir),), source="npz", train_per_class=4),
                      0, None) == key  # the same bytes elsewhere: the same classifier
    assert stage0_key(cfg, base.model_copy(update={"train_per_class": 5}), 0, None) != key  # other rows
    assert stage0_key(cfg, base.model_copy(update={"split_seed": 1}), 0, None) != key
    assert stage0_key(cfg, base.model_copy(update={"tune_per_class": 7}), 0, None) == key  # test rows: no change
    with np.load(copy / "train.npz") as z:
        images, labels = z["images"].copy(), z["labels"]
    images[0, 0, 0, 0] ^= 1  # another copy of "the same" dataset (a re-encoded JPEG, say)
    np.savez(copy / "train.npz", images=images, labels=labels)
    assert stage0_key(cfg, base, 0, None) != key
