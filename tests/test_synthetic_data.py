"""The synthetic CIFAR look-alike the tests train on.

Both layouts decode alike, classes differ, a seed repeats, and a ResNet-20 learns it from scratch.
"""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from synthetic_data import NUM_CLASSES, write_synthetic_cifar
from trainables.config import ClassifierConfig, DataConfig
from trainables.data import iterate_batches, load_splits, per_class_rows
from trainables.data.formats import read_npz, read_parquet
from trainables.training.device import pick_runtime
from trainables.training.stage0 import prepare_downstream


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small copy: 12 training and 4 test images per class."""
    return write_synthetic_cifar(tmp_path_factory.mktemp("small"), train_per_class=12, test_per_class=4, seed=3)


@pytest.mark.parametrize("split, per_class", [("train", 12), ("test", 4)])
def test_npz_and_parquet_decode_to_the_same_arrays(small, split, per_class):
    xn, yn = read_npz(small / f"{split}.npz")
    xp, yp = read_parquet(small / f"{split}.parquet")
    assert xn.shape == (NUM_CLASSES * per_class, 3, 32, 32) and xn.dtype == torch.uint8 and yn.dtype == torch.int64
    assert torch.equal(xn, xp) and torch.equal(yn, yp)
    assert torch.bincount(yn).tolist() == [per_class] * NUM_CLASSES
    pick = lambda y: per_class_rows(y, (2,), seed=1)[0]  # noqa: E731  (only some rows decoded)
    assert all(torch.equal(a, b) for a, b in zip(read_npz(small / f"{split}.npz", pick),
                                                 read_parquet(small / f"{split}.parquet", pick)))


def test_parquet_has_the_huggingface_layout(small):
    table = pq.read_table(small / "train.parquet")
    assert table.schema.names == ["img", "label"] and str(table.schema.field("label").type) == "int64"
    assert [f.name for f in table.schema.field("img").type] == ["bytes", "path"]
    img = table.column("img").combine_chunks()
    assert img.field("bytes")[0].as_py().startswith(b"\x89PNG") and img.field("path").null_count == len(table)


def test_load_splits_reads_either_layout_alike(small):
    base = DataConfig(search_dirs=(str(small),), train_per_class=8, tune_per_class=2, final_per_class=1, split_seed=5)
    runs = {source: load_splits(base.model_copy(update={"source": source}), with_final=True)
            for source in ("auto", "npz", "parquet")}
    ref = runs["npz"]
    assert len(ref.train) == 80 and len(ref.tune) == 20 and len(ref.final) == 10
    for s in runs.values():
        for a, b in ((s.train, ref.train), (s.tune, ref.tune), (s.final, ref.final)):
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_classes_look_different(synthetic_cifar_dir):
    """Per-class mean images are far apart, and the nearest class mean already classifies most test images."""
    z, t = np.load(synthetic_cifar_dir / "train.npz"), np.load(synthetic_cifar_dir / "test.npz")
    x, y = z["images"].astype(np.float64) / 255, z["labels"]
    means = np.stack([x[y == c].mean(0) for c in range(NUM_CLASSES)])
    gaps = np.sqrt(((means[:, None] - means[None]) ** 2).mean(axis=(2, 3, 4)))  # RMS difference per pixel
    assert gaps[~np.eye(NUM_CLASSES, dtype=bool)].min() > 0.05  # measured: 0.10; noise in a mean: ~0.02
    colours = means.mean(axis=(1, 2))  # one mean colour per class
    xt = t["images"].astype(np.float64).mean(axis=(1, 2)) / 255
    nearest = ((xt[:, None] - colours[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == t["labels"]).mean() > 0.8  # measured: 0.998


def test_the_same_seed_writes_the_same_data(tmp_path, small):
    again = write_synthetic_cifar(tmp_path / "again", train_per_class=12, test_per_class=4, seed=3)
    other = write_synthetic_cifar(tmp_path / "other", train_per_class=12, test_per_class=4, seed=4)
    for name in ("train.npz", "test.npz", "train.parquet", "test.parquet"):
        read = read_npz if name.endswith("npz") else read_parquet
        (xa, ya), (xb, yb), (xo, yo) = (read(d / name) for d in (small, again, other))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(ya, yo) and not torch.equal(xa, xo)
    train, test = read_npz(small / "train.npz")[0], read_npz(small / "test.npz")[0]
    assert not torch.equal(train[:len(test)], test)  # the splits draw from separate streams
    with pytest.raises(ValueError, match="unknown layouts"):
        write_synthetic_cifar(tmp_path / "bad", layouts=("jpeg",))
    only = write_synthetic_cifar(tmp_path / "only", train_per_class=1, test_per_class=1, layouts=("parquet",))
    assert sorted(p.name for p in only.iterdir()) == ["test.parquet", "train.parquet"]


def test_a_resnet20_from_scratch_learns_it_in_stage_0(synthetic_cifar_dir, tmp_path):
    """The product's stage 0 (SGD, batch 128) on 400 images for 4 epochs: clearly above chance (0.1)."""
    data = DataConfig(search_dirs=(str(synthetic_cifar_dir),), train_per_class=40, tune_per_class=20)
    splits = load_splits(data, with_final=False)
    cfg = ClassifierConfig(arch="resnet20", checkpoint=None, finetune_epochs=4, finetune_lr=0.01,
                           cache_dir=str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = prepare_downstream(cfg, data, splits.train, seed=0, rt=pick_runtime("cpu", threads=2))
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in iterate_batches(splits.tune, 500))
    assert correct / len(splits.tune) >= 0.3, correct / len(splits.tune)  # printed on failure
