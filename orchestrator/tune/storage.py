"""Where a study's Tune experiment lives: the study folder's ``tune/``, or object storage.

``storage_path`` is a folder every node mounts, or a URI that pyarrow opens (``s3://bucket/prefix``,
``gs://…``, ``hdfs://…``, ``abfs://…``; options such as ``?endpoint_override=host:port&scheme=http``
for an S3-compatible server). With a URI, Tune's trial results, checkpoints and experiment snapshots
go to ``<storage_path>/<name>/tune`` and the driver's own state (Optuna, the scheduler's rungs,
``study.json``, an embedded MLflow store: sqlite files a bucket cannot hold) stays in the local study
folder ``<state_path>/<name>``. Credentials come from the environment (``AWS_*``, ``GOOGLE_*``), as
pyarrow reads them on every node; a secret left in the URI is masked wherever semtune writes it.

Ray reads and writes the experiment through ``pyarrow.fs`` itself; this module gives the few places
that edit Tune's saved state before a restore (:mod:`orchestrator.tune.restore`) the same view of it,
local or remote, with the same handful of operations.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs

# The URI schemes pyarrow.fs.FileSystem.from_uri opens (pyarrow 25); file:// is a local folder.
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def is_uri(storage_path: str) -> bool:
    return "://" in storage_path


def readable_path(fs: pyarrow.fs.FileSystem | None, path: str) -> str:
    """A path in ``fs`` as people (and ``semtune report``) read it: local as is, else ``s3://bucket/key``."""
    return path if fs is None or isinstance(fs, pyarrow.fs.LocalFileSystem) else f"{fs.type_name}://{path}"


def uri_join(uri: str, *parts: str) -> str:
    """``parts`` appended to a URI's path; its query (``?endpoint_override=…``) is kept."""
    split = urlsplit(uri)
    return urlunsplit(split._replace(path=posixpath.join(split.path or "/", *parts)))


@dataclass(frozen=True)
class TuneStorage:
    """One Tune experiment folder: ``fs`` and the ``path`` in it, and what Tune is given for it."""

    fs: pyarrow.fs.FileSystem
    path: str  # the experiment folder (…/<name>/tune) within fs

    @classmethod
    def local(cls, tune_dir: Path | str) -> "TuneStorage":
        return cls(pyarrow.fs.LocalFileSystem(), str(tune_dir))

    @classmethod
    def remote(cls, uri: str) -> "TuneStorage":
        """``uri``: the experiment folder. Opening it may ask the server (S3 resolves the bucket's region)."""
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        return cls(fs, path.rstrip("/"))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pyarrow.fs.LocalFileSystem)

    # What RunConfig and Tuner.restore are given: the parent and the experiment name, in ``fs``.
    @property
    def parent(self) -> str:
        return posixpath.dirname(self.path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def filesystem(self) -> pyarrow.fs.FileSystem | None:
        """``storage_filesystem`` for Tune: None for a local folder (Tune's own default)."""
        return None if self.is_local else self.fs

    def describe(self, path: str | None = None) -> str:
        """A path in this storage as people read it: a local path, or ``scheme://bucket/key``."""
        return readable_path(self.fs, self.path if path is None else path)

    # -- the operations the restore needs -------------------------------------------------------
    def join(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def glob(self, pattern: str, folder: str | None = None) -> list[str]:
        """Paths directly in ``folder`` (default: the experiment) whose name matches, sorted by name."""
        selector = pyarrow.fs.FileSelector(folder or self.path, allow_not_found=True)
        return sorted(info.path for info in self.fs.get_file_info(selector)
                      if fnmatch.fnmatch(posixpath.basename(info.path), pattern))

    def is_dir(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pyarrow.fs.FileType.Directory

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def write(self, path: str, data: bytes) -> None:
        """Atomically: a local file is replaced by a rename; an object becomes visible only once whole."""
        if not self.is_local:
            with self.fs.open_output_stream(path) as stream:
                stream.write(data)
            return
        tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.tmp")
        with open(tmp, "wb") as stream:
            stream.write(data)
        os.replace(tmp, path)

    def copy_tree(self, source: str, destination: str) -> None:
        self.fs.create_dir(destination, recursive=True)  # pyarrow creates no local destination folder
        pyarrow.fs.copy_files(source, destination, source_filesystem=self.fs, destination_filesystem=self.fs)


def remote_tune_storage(storage_path: str, name: str) -> TuneStorage:
    """The experiment of study ``name`` on object storage: ``<storage_path>/<name>/tune``."""
    return TuneStorage.remote(uri_join(storage_path, name, "tune"))


def study_tune_storage(spec, folder) -> TuneStorage:
    """A study's experiment (``spec``: a StudySpec, ``folder``: its StudyFolder): on object storage
    (:func:`remote_tune_storage`), else the study folder's ``tune/``."""
    if is_uri(spec.storage_path):
        return remote_tune_storage(spec.storage_path, spec.name)
    return TuneStorage.local(folder.tune_dir)
