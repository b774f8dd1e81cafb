"""Reading CIFAR-10 from Parquet and npz, seeded stratified splits, device-side batches.

On the synthetic CIFAR look-alike the tests write (any clone); the shared JPEG copy is checked
where it is present.
"""

import numpy as np
import pytest
import torch

from trainables.config import DataConfig
from trainables.data import ImageSet, iterate_batches, load_splits, per_class_rows
from trainables.data.formats import read_npz, read_parquet


@pytest.mark.parametrize("copy", ["synthetic", "shared"])
def test_parquet_decodes_to_the_npz_arrays(request, copy):
    folder = request.getfixturevalue({"synthetic": "synthetic_cifar_dir", "shared": "cifar_dir"}[copy])
    pick = lambda y: per_class_rows(y, (3,), seed=None)[0]  # noqa: E731
    xp, yp = read_parquet(folder / "test.parquet", pick)
    xn, yn = read_npz(folder / "test.npz", pick)
    assert xp.shape == (30, 3, 32, 32) and xp.dtype == torch.uint8
    assert torch.equal(yp, yn) and torch.equal(xp, xn)


def test_per_class_rows_are_disjoint_seeded_and_stratified():
    labels = np.repeat(np.arange(10), 50)
    val, train = per_class_rows(labels, (5, 20), seed=3)
    assert not set(val) & set(train)
    assert np.bincount(labels[val]).tolist() == [5] * 10 and np.bincount(labels[train]).tolist() == [20] * 10
    again = per_class_rows(labels, (5, 20), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((val, train), again))
    other = per_class_rows(labels, (5, 20), seed=4)
    assert not np.array_equal(val, other[0])
    rest = per_class_rows(labels, (5, None), seed=3)[1]
    assert len(rest) == 450
    with pytest.raises(ValueError, match="class"):
        per_class_rows(labels, (40, 20), seed=0)


def test_load_splits_reads_only_the_seeded_per_class_subsets(synthetic_cifar_dir):
    cfg = DataConfig(search_dirs=(str(synthetic_cifar_dir),), train_per_class=7, val_per_class=3, test_per_class=2)
    s = load_splits(cfg, seed=0, with_test=True)
    assert len(s.train) == 70 and len(s.val) == 30 and len(s.test) == 20
    assert torch.bincount(s.val.labels).tolist() == [3] * 10 and torch.bincount(s.train.labels).tolist() == [7] * 10
    assert s.train.images.dtype == torch.uint8 and s.train.images.shape[1:] == (3, 32, 32)
    z = np.load(synthetic_cifar_dir / "train.npz")
    train_rows = {im.tobytes() for im in z["images"]}
    assert all(im.permute(1, 2, 0).numpy().tobytes() in train_rows for im in s.val.images)
    assert not {im.numpy().tobytes() for im in s.val.images} & {im.numpy().tobytes() for im in s.train.images}
    other = load_splits(cfg, seed=1, with_test=True)
    assert not torch.equal(other.val.images, s.val.images)  # the seed picks the train/val subsets...
    assert torch.equal(other.test.images, s.test.images)  # ...but not the test subset (file order)
    # the test subset is the first N per class in file order
    z = np.load(synthetic_cifar_dir / "test.npz")
    rows = per_class_rows(z["labels"], (2,), seed=None)[0]
    assert torch.equal(s.test.images, torch.from_numpy(z["images"][rows]).permute(0, 3, 1, 2))
    parquet = load_splits(cfg.model_copy(update={"source": "parquet"}), seed=0, with_test=True)
    for a, b in ((s.train, parquet.train), (s.val, parquet.val), (s.test, parquet.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_load_splits_from_the_shared_copy(cifar_dir):
    cfg = DataConfig(search_dirs=(str(cifar_dir),), train_per_class=7, val_per_class=3, test_per_class=2)
    s = load_splits(cfg, seed=0, with_test=True)
    assert len(s.train) == 70 and len(s.val) == 30 and len(s.test) == 20
    assert torch.bincount(s.val.labels).tolist() == [3] * 10
    assert s.train.images.dtype == torch.uint8 and s.train.images.shape[1:] == (3, 32, 32)
    # the test subset is the first N per class in file order (the file is sorted by class)
    z = np.load(cifar_dir / "test.npz")
    assert torch.equal(s.test.images[0], torch.from_numpy(z["images"][0]).permute(2, 0, 1))


def test_missing_files_with_an_explicit_format_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.npz"):
        load_splits(DataConfig(source="npz", root=str(tmp_path)), seed=0, with_test=False)


def test_batches_shuffle_with_the_generator_and_flip():
    ds = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous(),
                  torch.arange(10))
    order = lambda seed: torch.cat([y for _, y in iterate_batches(  # noqa: E731
        ds, 4, generator=torch.Generator().manual_seed(seed), shuffle=True)])
    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))
    assert sorted(order(0).tolist()) == list(range(10))
    assert [len(y) for _, y in iterate_batches(ds, 4, drop_last=True)] == [4, 4]
    x, y = next(iterate_batches(ds, 10))
    assert x.dtype == torch.float32 and x.max() <= 1.0 and torch.allclose(x[:, 0, 0, 0] * 255, y.float())
    ramp = ImageSet(torch.tensor([[[[0, 255]]]], dtype=torch.uint8).expand(64, 3, 1, 2).contiguous(),
                    torch.zeros(64, dtype=torch.long))
    x, _ = next(iterate_batches(ramp, 64, generator=torch.Generator().manual_seed(0), hflip=True))
    flipped = (x[:, 0, 0, 0] == 1.0).sum().item()
    assert 10 < flipped < 54  # about half the images are mirrored
