"""RGB-D clip datasets: the official split-file format over frame folders, and the bundled NvGesture pack.

Split files hold one clip per line: ``<relative clip directory> <number of frames> <label>`` (0-based
labels; some official files carry leading or trailing spaces). Presets encode each dataset's path rules
(MotionRGBD spec §6.2). Frames are read with Pillow (a matplotlib dependency). Where a clip has no frame
folder but a video file (the folder path itself or with a video suffix, e.g. IsoGD's ``M_00001.avi``), the
video is decoded with PyAV, the optional extra ``pip install 'damokit[video]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from damokit.data.packs import load_npz

__all__ = ["ClipEntry", "ClipPreset", "PRESETS", "parse_split_file", "ClipListDataset", "load_nvgesture_mini"]

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov")


@dataclass(frozen=True)
class ClipEntry:
    path: str
    frames: int
    label: int


def parse_split_file(path: str | Path, *, num_classes: int | None = None) -> list[ClipEntry]:
    """Parse an official split file; malformed lines raise with their line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not fields[1].isdigit() or not fields[2].lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected '<clip dir> <frames> <label>', got {line.strip()!r}")
        label = int(fields[2])
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise ValueError(f"{path}:{number}: label {label} outside [0, {num_classes})")
        entries.append(ClipEntry(fields[0], int(fields[1]), label))
    if not entries:
        raise ValueError(f"split file {path} lists no clips")
    return entries


@dataclass(frozen=True)
class ClipPreset:
    """Where a dataset keeps each modality's frames and how they are named."""

    rgb_dir: Callable[[str], str]
    depth_dir: Callable[[str], str]
    rgb_pattern: str = "{:06d}.jpg"
    depth_pattern: str = "{:06d}.jpg"
    index_base: int = 0
    depth_index_base: int = 0


def _thu_depth(rel: str) -> str:
    head, _, name = rel.rpartition("/")
    depth = (head.replace("RGB", "Depth") + "/" if head else "") + "D" + name.removeprefix("RGB")
    return depth


PRESETS: dict[str, ClipPreset] = {
    "nvgesture": ClipPreset(lambda r: f"rgb/{r}", lambda r: f"depth/{r}"),
    "isogd": ClipPreset(lambda r: f"rgb/{r}", lambda r: f"depth/{r}".replace("/M_", "/K_")),
    "thuread": ClipPreset(lambda r: r, _thu_depth),
    "ntu": ClipPreset(
        lambda r: f"Images/{r}",
        lambda r: f"nturgb+d_depth_masked/{r.removesuffix('_rgb')}",
        depth_pattern="MDepth-{:08d}.png",
        index_base=1,
        depth_index_base=1,
    ),
}


class ClipListDataset(Dataset):
    """Clips listed in a split file, read from frame folders, sampled to ``frames`` with the segment rule.

    Returns ``(clip (C, T, size, size) float in [0, 1], label)``; depth is 1 channel.
    """

    def __init__(
        self,
        list_file: str | Path,
        root: str | Path,
        *,
        preset: str,
        modality: str = "rgb",
        frames: int = 16,
        size: int = 112,
        train: bool = False,
        num_classes: int | None = None,
    ):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        if modality not in ("rgb", "depth"):
            raise ValueError(f"modality must be 'rgb' or 'depth', got {modality!r}")
        self.entries = parse_split_file(list_file, num_classes=num_classes)
        self.root, self.preset, self.modality = Path(root), PRESETS[preset], modality
        self.frames, self.size, self.train = frames, size, train

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from damokit.video.motion_rgbd.sampling import segment_indices

        entry = self.entries[index]
        p = self.preset
        folder = self.root / (p.rgb_dir if self.modality == "rgb" else p.depth_dir)(entry.path)
        picks = segment_indices(entry.frames, self.frames, train=self.train).tolist()
        mode = "RGB" if self.modality == "rgb" else "L"
        if folder.is_dir():
            pattern = p.rgb_pattern if self.modality == "rgb" else p.depth_pattern
            base = p.index_base if self.modality == "rgb" else p.depth_index_base
            images = [self._read_frame(folder / pattern.format(i + base), entry, mode) for i in picks]
        else:
            images = self._read_video(_find_video(folder, entry), picks, entry, mode)
        clip = torch.from_numpy(np.stack(images)).float() / 255.0  # (T, H, W[, C])
        clip = clip.permute(3, 0, 1, 2) if clip.ndim == 4 else clip[None]  # (C, T, H, W)
        return clip, entry.label

    def _resize(self, img) -> np.ndarray:
        from PIL import Image

        return np.asarray(img.resize((self.size, self.size), Image.BILINEAR))

    def _read_frame(self, file: Path, entry: ClipEntry, mode: str) -> np.ndarray:
        from PIL import Image

        if not file.is_file():
            raise FileNotFoundError(f"frame {file} is missing (clip {entry.path!r} lists {entry.frames} frames)")
        with Image.open(file) as img:
            return self._resize(img.convert(mode))

    def _read_video(self, file: Path, picks: list[int], entry: ClipEntry, mode: str) -> list[np.ndarray]:
        """Decode the frames at ``picks`` (0-based) in one sequential pass over the video."""
        try:
            import av
        except ImportError as err:
            raise ImportError(f"{file} is a video; reading videos needs PyAV: pip install 'damokit[video]'") from err
        wanted, last = set(picks), max(picks)
        decoded: dict[int, np.ndarray] = {}
        count = 0
        try:
            with av.open(str(file)) as container:
                for count, frame in enumerate(container.decode(video=0), start=1):
                    if count - 1 in wanted:
                        decoded[count - 1] = self._resize(frame.to_image().convert(mode))
                    if count > last:
                        break
        except av.FFmpegError as err:
            raise ValueError(f"cannot decode video {file}: {err}") from err
        if last not in decoded:
            raise ValueError(
                f"video {file} has {count} decodable frames, but clip {entry.path!r} lists {entry.frames} "
                f"(frame {last} was needed); fix the frame count in the split file"
            )
        return [decoded[i] for i in picks]


def _find_video(folder: Path, entry: ClipEntry) -> Path:
    """The video file standing for a clip without a frame folder: the path itself or the path + a video suffix."""
    candidates = [folder] if folder.suffix.lower() in VIDEO_SUFFIXES else []
    candidates += [folder.with_name(folder.name + suffix) for suffix in VIDEO_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"clip {entry.path!r}: neither a frame folder {folder} nor a video ({', '.join(VIDEO_SUFFIXES)}) exists"
    )


def load_nvgesture_mini() -> dict[str, torch.Tensor | np.ndarray]:
    """The bundled 49-clip NvGesture pack: ``rgb`` (N, 3, 16, 64, 64), ``depth`` (N, 1, 16, 64, 64) in [0, 1],
    ``labels`` (N,), and the ``subject``/``repetition`` string arrays."""
    pack = load_npz("rgbd/nvgesture_mini.npz")
    rgb = torch.from_numpy(pack["rgb"]).permute(0, 4, 1, 2, 3).float() / 255.0
    depth = torch.from_numpy(pack["depth"])[:, None].float() / 255.0
    return {"rgb": rgb, "depth": depth, "labels": torch.from_numpy(pack["label"]).long(),
            "subject": pack["subject"], "repetition": pack["repetition"]}  # fmt: skip
