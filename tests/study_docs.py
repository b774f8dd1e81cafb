"""Tiny study documents as plain data, for tests that validate, hash or route a study without running one."""

from __future__ import annotations

import copy

from search_spaces import merge

DELETE = object()  # with_changes: remove the key


def tiny_doc(**over) -> dict:
    """A valid, tiny study (no data or model folders needed to validate it); ``over`` is merged in."""
    doc = {
        "name": "tiny",
        "dataset": {"train_per_class": 10, "tune_per_class": 5},
        "trial": {"codec": {"width": 8}, "classifier": {"arch": "resnet20"}, "stage1": {"lr": 0.003},
                  "stage2": {"lr": 0.001}, "batch_size": 16, "threads": 1},
        "conditions": {"snr_db": [20], "kn": ["1/12", "1/6"]},
        "search_space": {"alpha1": {"low": 0.1, "high": 0.9}, "tau": {"low": 0.1, "high": 1.0, "log": True}},
        "sampler": {"name": "random"},
        "pruner": {"name": "moasha", "grace_epochs": 1, "reduction_factor": 2},
        "budget": {"trials_per_condition": 3, "max_concurrent": 2, "stage1_epochs": 2, "stage2_epochs": 1},
        "storage_path": "studies",
    }
    return merge(doc, over)


def with_changes(doc: dict, changes: dict[str, object]) -> dict:
    """``doc`` with dotted keys set (or removed with ``DELETE``), creating parents as needed."""
    doc = copy.deepcopy(doc)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return doc
