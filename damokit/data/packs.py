"""Locate and verify the bundled real data packs (copied unmodified from the project's shared data).

Packs are found under ``$DAMOKIT_DATA`` when set, else under the repository's ``data/`` folder. Each file
is checked against the sha256 its pack README publishes, once per process.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from damokit.errors import DamokitError

__all__ = ["DataPackError", "CHECKSUMS", "data_root", "pack_path", "load_npz"]

# sha256 of every data file, as published in data/<pack>/README.md.
CHECKSUMS: dict[str, str] = {
    "forecasting/ETTh1.csv": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    "forecasting/ETTh2.csv": "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
    "forecasting/exchange_rate.csv": "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",
    "forecasting/national_illness.csv": "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",
    "forecasting/WTH.csv": "cbc815dee073bc715487b3b903f4537ca89c88e0fd6563bb25923253a019edc6",
    "images/cifar10_mini.npz": "8ee21edcc1f4315460656ec9b7b8d8f7108d34ac3c17a12855b19209e653b81f",
    "images/mnist_test.npz": "fe63c1021e6ba63d16c71807cf45e9bc82b7a2b70e21e97df8538e26ca7ff9fa",
    "images/notmnist_test.npz": "02aad1abd1cacbe97bf8f548507b8f83640dbe3ba129d2221f6f370735b80cbf",
    "nas/nas-bench-macro_cifar10.json": "686dee8363cc21cca8c1f321ad5749454f2d9b9ca5972682e137e539bc522297",
    "rgbd/nvgesture_mini.npz": "dae316cae7b96ddb7b6e53af08d0040c39df8c326c6f5e63fea0287ee0449ac5",
    "segmentation/coco128_stuff.npz": "8e8794918be2e2a29b0e5928e29644179deb9827cc75b3ca41e93e70d4592d9c",
    "detection/bccd.npz": "b5ff2090a7ebf7f79cb49ae048d2b265900a31e85a994da609d49629c3a2515e",
    "reid/pku_reid_mini/pku_reid_mini.npz": "aca1c5c54e78f2929660866277307e6fc58a4d8fbd4b26bdb683ad0bde70905c",
}


class DataPackError(DamokitError, FileNotFoundError):
    """A bundled data file is missing or does not match its published checksum."""


def data_root() -> Path:
    """The folder holding the packs: ``$DAMOKIT_DATA`` or the repository's ``data/``."""
    env = os.environ.get("DAMOKIT_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


@functools.cache
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_path(relpath: str, *, verify: bool = True) -> Path:
    """Absolute path of a bundled data file, e.g. ``pack_path("forecasting/ETTh1.csv")``.

    Raises:
        DataPackError: the file is missing (the message says where to put it) or its checksum differs.
    """
    path = data_root() / relpath
    if not path.is_file():
        raise DataPackError(
            f"data file {relpath!r} not found at {path}. Copy the pack unmodified from the project's shared "
            f"data folder into {data_root()} (or point DAMOKIT_DATA at a folder that holds it)."
        )
    expected = CHECKSUMS.get(relpath)
    if verify and expected is not None:
        stat = path.stat()
        actual = _sha256(path, stat.st_mtime_ns, stat.st_size)
        if actual != expected:
            raise DataPackError(
                f"data file {path} is corrupt or modified: sha256 {actual[:12]}..., expected {expected[:12]}... "
                f"(from its pack README). Copy it again, unmodified."
            )
    return path


def load_npz(relpath: str) -> dict:
    """Load a bundled ``.npz`` pack into a dict of arrays, never unpickling."""
    import numpy as np

    path = pack_path(relpath)
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}
