"""The public ResNet checkpoints load strictly and score what an independent run measured.

The measured accuracy needs the shared CIFAR-10 copy and the public checkpoint; strict loading
is checked on a randomly initialised ResNet-20 saved in the same format.
"""

import numpy as np
import pytest
import torch

from trainables.classifier import DownstreamModel, load_checkpoint, locate_public_checkpoint
from trainables.classifier.pretrained import PUBLIC_CHECKPOINTS, sha256_of
from trainables.data import ImageSet, iterate_batches, per_class_rows


def _first_per_class(cifar_dir, n):
    z = np.load(cifar_dir / "test.npz")
    rows = per_class_rows(z["labels"], (n,), seed=None)[0]
    x = torch.from_numpy(z["images"][rows]).permute(0, 3, 1, 2).contiguous()
    return ImageSet(x, torch.from_numpy(z["labels"][rows]))


@torch.no_grad()
def _accuracy(model, ds):
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in iterate_batches(ds, 500))
    return correct / len(ds)


def test_resnet56_loads_strictly_and_scores_at_least_82_percent(cifar_dir, models_dir):
    path = locate_public_checkpoint("resnet56", (str(models_dir),), download=False)
    assert sha256_of(path) == PUBLIC_CHECKPOINTS["resnet56"][1]
    model = load_checkpoint(DownstreamModel("resnet56"), path)
    assert sum(p.numel() for p in model.parameters()) == 853_018
    ds = _first_per_class(cifar_dir, 200)
    assert len(ds) == 2000 and torch.bincount(ds.labels).tolist() == [200] * 10
    acc = _accuracy(model, ds)
    assert acc >= 0.82, acc  # an independent implementation measured 83.15 % on these 2,000 images


def test_strict_loading_refuses_a_mismatched_checkpoint(random_resnet20_checkpoint, tmp_path):
    path = random_resnet20_checkpoint  # the public format (``state_dict`` of ``module.``-prefixed keys)
    load_checkpoint(DownstreamModel("resnet20"), path)  # loads as it is
    with pytest.raises(RuntimeError, match="Missing key"):
        load_checkpoint(DownstreamModel("resnet56"), path)  # 3 blocks per stage where 9 are expected
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["state_dict"]["module.extra"] = torch.zeros(1)
    torch.save(blob, tmp_path / "bad.th")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_checkpoint(DownstreamModel("resnet20"), tmp_path / "bad.th")


def test_backbone_and_classifier_split_compose_to_the_model():
    model = DownstreamModel("resnet20").eval()
    x = torch.rand(4, 3, 32, 32)
    feats = model.features(x)
    assert feats.shape == (4, 64)
    assert torch.allclose(model.classifier(feats), model(x))
    names = {id(p) for p in model.backbone_parameters()}
    assert not names & {id(p) for p in model.classifier.parameters()}
