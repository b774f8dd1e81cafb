"""What the GPU check carries to the lent machine, and the tiny synthetic data of its dry run.

``python bench/gpu_check_data.py`` (or ``bash bench/gpu_check.sh --prepare``), run on the development
machine, fills ``.gpucheck/`` (git-ignored through ``.git/info/exclude``):

- ``cifar10/{train,test}.parquet``: the shared CIFAR-10 copy, every row, rewritten with zstd. The JPEG
  bytes are unchanged (checked here); they share a ~600-byte header that the original files store
  uncompressed 50,000 times, so 45 + 9 MiB become ~14 + 3 MiB. ``trainables.data`` reads them as is.
- ``models/resnet56-cifar10-akamaster.th``: the public ResNet-56 checkpoint.

It then prints what the run tool will carry (``.gpucheck`` and ``.whl``) in MiB; the limit is 64 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CHECKPOINT = "resnet56-cifar10-akamaster.th"
CARRY_LIMIT_MIB = 60  # the run tool takes 64 MiB; keep a margin


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recompress(src: Path, dst: Path, level: int = 19) -> dict:
    """``src`` rewritten with zstd, columns ``img`` (struct with ``bytes`` only) and ``label``; bytes verified."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    blobs = table.column("img").combine_chunks().field("bytes")
    out = pa.table({"img": pa.StructArray.from_arrays([blobs], ["bytes"]), "label": table.column("label")})
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(out, dst, compression="zstd", compression_level=level, use_dictionary=False)
    back = pq.read_table(dst)
    if not (back.column("img").combine_chunks().field("bytes").equals(blobs) and back.column("label").equals(
            table.column("label"))):
        raise RuntimeError(f"{dst}: the rewritten rows differ from {src}")
    return {"source": str(src), "source_sha256": _sha256(src), "rows": len(out),
            "bytes": dst.stat().st_size, "source_bytes": src.stat().st_size}


def carried_mib(root: Path = ROOT) -> dict[str, float]:
    sizes = {}
    for name in (".gpucheck", ".whl"):
        files = [p for p in (root / name).rglob("*") if p.is_file()] if (root / name).is_dir() else []
        sizes[name] = sum(p.stat().st_size for p in files) / 2**20
    return sizes


def prepare(dest: Path, shared: Path, level: int = 19) -> dict:
    manifest: dict = {"files": {}}
    for split in ("train", "test"):
        manifest["files"][f"cifar10/{split}.parquet"] = recompress(
            shared / "data" / "cifar10" / f"{split}.parquet", dest / "cifar10" / f"{split}.parquet", level)
    (dest / "models").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared / "models" / CHECKPOINT, dest / "models" / CHECKPOINT)
    manifest["files"][f"models/{CHECKPOINT}"] = {"sha256": _sha256(dest / "models" / CHECKPOINT)}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# -- the dry run's stand-in --------------------------------------------------------------------------
def write_synthetic(dest: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """A CIFAR-10 look-alike in the same Parquet layout (JPEG bytes): one colour per class plus noise."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 226, size=(10, 3))
    dest.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        blobs, labels = [], []
        for i in range(10 * per_class):
            label = i % 10
            img = np.clip(colours[label] + rng.normal(0, 25, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            blobs.append(buf.getvalue())
            labels.append(label)
        img_col = pa.StructArray.from_arrays([pa.array(blobs, pa.binary())], ["bytes"])
        pq.write_table(pa.table({"img": img_col, "label": pa.array(labels, pa.int64())}), dest / f"{split}.parquet")
    return dest


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dest", type=Path, default=ROOT / ".gpucheck")
    p.add_argument("--shared", type=Path, default=SHARED, help="folder holding data/cifar10 and models")
    p.add_argument("--level", type=int, default=19, help="zstd level")
    args = p.parse_args(argv)
    manifest = prepare(args.dest, args.shared, args.level)
    for name, info in manifest["files"].items():
        size = (args.dest / name).stat().st_size / 2**20
        print(f"{name:<40} {size:7.2f} MiB" + (f"  (from {info['source_bytes'] / 2**20:.2f} MiB, "
                                               f"{info['rows']} rows)" if "rows" in info else ""))
    sizes = carried_mib()
    total = sum(sizes.values())
    print("carried: " + ", ".join(f"{k} {v:.2f} MiB" for k, v in sizes.items()) + f"; total {total:.2f} MiB")
    if not sizes[".whl"]:
        print("warning: no .whl/ folder: the device has no pydantic or pytest (see bench/README.md)")
    if total > CARRY_LIMIT_MIB:
        raise SystemExit(f"error: {total:.1f} MiB is over the {CARRY_LIMIT_MIB} MiB carry budget")


if __name__ == "__main__":
    main()
