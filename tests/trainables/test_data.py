"""Reading CIFAR-10 from Parquet and npz, seeded stratified splits, device-side batches."""

import numpy as np
import pytest
import torch

from trainables.config import DataConfig
from trainables.data import ImageSet, iterate_batches, load_splits, per_class_rows
from trainables.data.formats import read_npz, read_parquet


def test_parquet_decodes_to_the_npz_arrays(cifar_dir):
    pick = lambda y: per_class_rows(y, (3,), seed=None)[0]  # noqa: E731
    xp, yp = read_parquet(cifar_dir / "test.parquet", pick)
    xn, yn = read_npz(cifar_dir / "test.npz", pick)
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
