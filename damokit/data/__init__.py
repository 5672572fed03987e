"""Datasets and loaders: bundled real data packs, CSV time series, images, synthetic generators."""

from damokit.data.packs import CHECKSUMS, DataPackError, data_root, load_npz, pack_path

__all__ = ["CHECKSUMS", "DataPackError", "data_root", "load_npz", "pack_path"]
