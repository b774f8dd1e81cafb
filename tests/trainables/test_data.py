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


def _rows_of(images: torch.Tensor, file_images: np.ndarray) -> set[int]:
    """The file rows an image set came from (the synthetic images are all distinct)."""
    index = {im.tobytes(): i for i, im in enumerate(file_images)}
    return {index[im.permute(1, 2, 0).numpy().tobytes()] for im in images}


@pytest.mark.parametrize("split", ["test_halves", "train_holdout"])
def test_tuning_final_and_classifier_training_images_are_disjoint(synthetic_cifar_dir, split):
    """The leak-free contract: the images the classifier and codec train on, the images the search is
    scored on and the images of the final score share no file row; each set is stratified."""
    cfg = DataConfig(search_dirs=(str(synthetic_cifar_dir),), split=split, train_per_class=7, tune_per_class=3,
                     final_per_class=2)
    s = load_splits(cfg, with_final=True)
    train_file, test_file = (np.load(synthetic_cifar_dir / f"{f}.npz")["images"] for f in ("train", "test"))
    rows = {"train": ("train", _rows_of(s.train.images, train_file)),
            "tune": ("train" if split == "train_holdout" else "test",
                     _rows_of(s.tune.images, train_file if split == "train_holdout" else test_file)),
            "final": ("test", _rows_of(s.final.images, test_file))}
    for a, (fa, ra) in rows.items():
        for b, (fb, rb) in rows.items():
            if a < b and fa == fb:
                assert not ra & rb, f"{a} and {b} share rows of {fa}"
    assert [len(r) for _, r in rows.values()] == [70, 30, 20]
    for ds, n in ((s.train, 7), (s.tune, 3), (s.final, 2)):
        assert torch.bincount(ds.labels).tolist() == [n] * 10
    # the stage-0 classifier trains on exactly s.train: prepare_stage0 and run_trial read the same rows
    assert torch.equal(load_splits(cfg, with_final=False).train.images, s.train.images)


def test_splits_are_seeded_by_split_seed_not_the_trial(synthetic_cifar_dir):
    cfg = DataConfig(search_dirs=(str(synthetic_cifar_dir),), train_per_class=7, tune_per_class=3, final_per_class=2)
    s = load_splits(cfg, with_final=True)
    assert load_splits(cfg, with_final=False).final is None
    other = load_splits(cfg.model_copy(update={"split_seed": 1}), with_final=True)
    assert not torch.equal(other.tune.images, s.tune.images)
    parquet = load_splits(cfg.model_copy(update={"source": "parquet"}), with_final=True)
    for a, b in ((s.train, parquet.train), (s.tune, parquet.tune), (s.final, parquet.final)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # final_per_class None: every test image the tuning set left
    rest = load_splits(cfg.model_copy(update={"final_per_class": None}), with_final=True)
    assert len(rest.tune) + len(rest.final) == len(np.load(synthetic_cifar_dir / "test.npz")["labels"])


def test_too_few_images_name_the_fields(synthetic_cifar_dir):
    cfg = DataConfig(search_dirs=(str(synthetic_cifar_dir),), tune_per_class=40, final_per_class=20)
    with pytest.raises(ValueError, match=r"test split: class 0 has 50 images.*data.tune_per_class \+ data.final_per_class"):
        load_splits(cfg, with_final=True)


def test_a_pretrained_classifier_cannot_tune_on_training_images():
    from trainables.config import ConfigError, build_trial_config

    with pytest.raises(ConfigError) as err:
        build_trial_config({"data": {"split": "train_holdout"}})
    assert err.value.problems[0][0] == "data.split"
    ok = build_trial_config({"data": {"split": "train_holdout"},
                             "classifier": {"checkpoint": None, "finetune_epochs": 1}})
    assert ok.data.split == "train_holdout"


def test_load_splits_from_the_shared_copy(cifar_dir):
    cfg = DataConfig(search_dirs=(str(cifar_dir),), train_per_class=7, tune_per_class=3, final_per_class=2)
    s = load_splits(cfg, with_final=True)
    assert len(s.train) == 70 and len(s.tune) == 30 and len(s.final) == 20
    assert torch.bincount(s.tune.labels).tolist() == [3] * 10
    assert s.train.images.dtype == torch.uint8 and s.train.images.shape[1:] == (3, 32, 32)


def test_missing_files_with_an_explicit_format_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.npz"):
        load_splits(DataConfig(source="npz", root=str(tmp_path)), with_final=False)


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
