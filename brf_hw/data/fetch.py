"""Locate data files: data directory from a flag or BRF_HW_DATA, download when missing, SHA-256 check."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..cli_util import UserError

ENV_VAR = "BRF_HW_DATA"
DEFAULT_DIR = Path.home() / ".cache" / "brf_hw" / "data"


class DataError(UserError, RuntimeError):
    """A data file is missing and cannot be fetched, or its checksum is wrong."""


@dataclass(frozen=True)
class RemoteFile:
    relpath: str  # path under the data directory, e.g. "qtdb/QTDB_train.mat"
    sha256: str
    urls: tuple[str, ...]  # public sources, tried in order


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: the explicit argument, else $BRF_HW_DATA, else ~/.cache/brf_hw/data."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_DIR


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(remote: RemoteFile, directory: str | os.PathLike | None = None) -> Path:
    """Return the verified local path of ``remote``, downloading it first if it is absent."""
    root = data_dir(directory)
    path = root / remote.relpath
    if path.exists():
        digest = sha256_of(path)
        if digest != remote.sha256:
            raise DataError(
                f"{path} has SHA-256 {digest}, expected {remote.sha256}: the file is corrupt or a "
                f"different version; delete it to download it again"
            )
        return path
    errors = []
    for url in remote.urls:
        try:
            _download(url, path, remote.sha256)
            return path
        except (urllib.error.URLError, OSError, DataError) as exc:
            errors.append(f"  {url}: {exc}")
    raise DataError(
        f"{remote.relpath} is not in the data directory {root} and could not be downloaded:\n"
        + "\n".join(errors)
        + f"\nPut the file at {path} (SHA-256 {remote.sha256}), or point --data-dir / "
        f"${ENV_VAR} at a directory that holds it."
    )


def _download(url: str, dest: Path, sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, tmp)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
    digest = sha256_of(tmp_path)
    if digest != sha256:
        tmp_path.unlink(missing_ok=True)
        raise DataError(f"downloaded file has SHA-256 {digest}, expected {sha256}")
    tmp_path.replace(dest)
