"""Pairs from the user's own videos: optical flow estimated once with :mod:`reconet_lib.estimate`, cached on disk.

Kept apart from :mod:`reconet_lib.data` so that the dataset layer needs neither video decoding nor flow
estimation. Decoding and estimation never happen inside ``__getitem__`` of a training step: :meth:`prepare`
fills the cache beforehand and the samples read only the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from . import estimate, images, video
from .config import data_dir
from .errors import UserInputError
from .estimate import METHODS
from .files import atomic_output, atomic_write_text
from .frame_folders import FRAME_SUFFIXES
from .pairs import PairAugment, make_sample, sample_generator
from .sizes import size_pair

#: File suffixes treated as video clips by :class:`VideoFolderPairs`.
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")

CACHE_VERSION = 1


def find_clips(source) -> list[Path]:
    """Video files and frame folders under ``source`` (a clip, a frame folder, a folder of them, or a list).

    A frame folder is a folder that directly holds image files. Returns sorted, de-duplicated paths.
    """
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    clips: list[Path] = []
    for item in sources:
        path = Path(item).expanduser()
        if path.is_file():
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                raise UserInputError(f"{path} is not a video file ({', '.join(VIDEO_SUFFIXES)})")
            clips.append(path)
        elif path.is_dir():
            if _is_frame_folder(path):
                clips.append(path)
                continue
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES:
                    clips.append(child)
                elif child.is_dir() and _is_frame_folder(child):
                    clips.append(child)
        else:
            raise UserInputError(
                f"video source {path} does not exist; pass a video file, a frame folder or a folder of clips"
            )
    unique = sorted({c.resolve() for c in clips})
    if not unique:
        raise UserInputError(
            f"no clips found in {source}: expected video files ({', '.join(VIDEO_SUFFIXES)}) or folders of frames"
        )
    return unique


def _frame_images(folder: Path) -> list[Path]:
    """The files of ``folder`` that :func:`reconet_lib.video.read_frames` reads as frames."""
    return [
        f for f in folder.iterdir() if f.suffix.lower() in FRAME_SUFFIXES and not f.name.startswith(".") and f.is_file()
    ]


def _is_frame_folder(path: Path) -> bool:
    return bool(_frame_images(path))


def _fingerprint(clip: Path) -> dict:
    """Path, size and modification time of a clip (for frame folders: over its frame files)."""
    if clip.is_file():
        stat = clip.stat()
        return {"path": str(clip), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stats = [f.stat() for f in _frame_images(clip)]
    return {
        "path": str(clip),
        "size": sum(s.st_size for s in stats),
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        "files": len(stats),
    }


class VideoFolderPairs(Dataset):
    """Pairs from the user's own videos, with optical flow estimated once and cached on disk.

    For consecutive kept frames t-1, t of each clip: current = t, previous = t-1, flow = the estimated flow
    t -> t-1, valid = the forward-backward check of the two estimated directions
    (:func:`reconet_lib.estimate.estimate_flows_and_valid`, called with frame_a = t, frame_b = t-1).

    The cache holds one compressed ``.npz`` per pair (uint8 frames, float32 flow, uint8 valid) in a folder per
    clip, named by a hash of the clip's path, size and modification time plus ``method``, ``size``, ``stride``
    and ``max_pairs``; a ``manifest.json`` written last marks a clip as complete. All writes are atomic.
    :meth:`prepare` fills the cache (with a progress bar); ``len()`` and indexing call it if needed, so call it
    yourself before training to keep estimation out of the training loop. ``__getitem__`` only reads the cache.

    Args:
        source: a video file, a frame folder, a folder of clips (mp4/mov/avi/mkv/webm) and/or frame folders,
            or a list of these.
        cache_dir: cache folder (default ``data_dir()/cache/video_pairs``).
        method: flow estimator, ``"dis"`` (offline) or a RAFT variant (see :mod:`reconet_lib.estimate`).
        size: frame size for :func:`reconet_lib.video.read_frames`: ``(h, w)``, an int (longer side, aspect
            kept) or None (as stored).
        stride: keep every ``stride``-th frame (pairs are frames ``t - stride``, ``t``).
        max_pairs: at most this many pairs per clip (None: all).
        augment, seed: see :class:`reconet_lib.data.SintelPairs`.
        device: where the estimator runs (RAFT); estimate_options: further keywords for the estimator.
        batch_size: pairs estimated at once. progress: show a ``tqdm.auto`` bar in :meth:`prepare`.
    """

    def __init__(
        self,
        source,
        cache_dir=None,
        *,
        method: str = "dis",
        size: int | tuple[int, int] | None = None,
        stride: int = 1,
        max_pairs: int | None = None,
        augment: PairAugment | None = None,
        seed: int = 0,
        device=None,
        estimate_options: dict | None = None,
        batch_size: int = 8,
        progress: bool = True,
    ) -> None:
        if method not in METHODS:
            raise UserInputError(
                f"VideoFolderPairs: unknown flow method {method!r}; choose one of {', '.join(METHODS)}"
            )
        if int(stride) != stride or stride < 1:
            raise UserInputError(f"VideoFolderPairs: stride must be a positive integer; got {stride!r}")
        if max_pairs is not None and (int(max_pairs) != max_pairs or max_pairs < 1):
            raise UserInputError(f"VideoFolderPairs: max_pairs must be a positive integer or None; got {max_pairs!r}")
        if cache_dir is None:
            cache_dir = data_dir() / "cache" / "video_pairs"
        self.clips = find_clips(source)
        self.cache_dir = Path(cache_dir).expanduser()
        self.method, self.stride, self.max_pairs = method, int(stride), max_pairs
        if size is not None and not isinstance(size, int):
            size = size_pair(size, "VideoFolderPairs")
        self.size = size
        self.augment, self.seed = augment, int(seed)
        self.device, self.estimate_options = device, dict(estimate_options or {})
        self.batch_size, self.progress = max(1, int(batch_size)), progress
        self.records: list[tuple[str, int, str]] | None = None

    # ---------------------------------------------------------------------------------------------- cache keys
    def clip_key(self, clip: Path) -> str:
        """The cache folder name of ``clip``: a hash of its fingerprint and the estimation settings."""
        settings = {
            "version": CACHE_VERSION,
            "clip": _fingerprint(clip),
            "method": self.method,
            "size": self.size,
            "stride": self.stride,
            "max_pairs": self.max_pairs,
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        return f"{clip.stem[:40]}-{digest}"

    def _manifest(self, key: str) -> dict | None:
        path = self.cache_dir / key / "manifest.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    # ---------------------------------------------------------------------------------------------- building
    def prepare(self) -> "VideoFolderPairs":
        """Estimate and cache every clip that is not cached yet, then build the index. Returns ``self``."""
        records = []
        for clip in self.clips:
            key = self.clip_key(clip)
            manifest = self._manifest(key)
            if manifest is None:
                manifest = self._build_clip(clip, key)
            records.extend((key, i, name) for i, name in enumerate(manifest["names"]))
        if not records:
            raise UserInputError(f"VideoFolderPairs: no clip in {[str(c) for c in self.clips]} has two frames or more")
        self.records = records
        return self

    def _build_clip(self, clip: Path, key: str) -> dict:
        folder = self.cache_dir / key
        names: list[str] = []
        pending: list[tuple[np.ndarray, np.ndarray, str]] = []
        bar = tqdm(desc=f"flow {clip.name}", unit="pair", disable=not self.progress, total=self.max_pairs)

        def flush() -> None:
            current = images.to_float(np.stack([c for c, _, _ in pending]))
            previous = images.to_float(np.stack([p for _, p, _ in pending]))
            options = dict(self.estimate_options)
            if self.device is not None:
                options["device"] = self.device
            flow, _, valid = estimate.estimate_flows_and_valid(current, previous, method=self.method, **options)
            flow, valid = flow.float().cpu().numpy(), (valid.cpu().numpy()[:, 0] >= 1).astype(np.uint8)
            for j, (c, p, name) in enumerate(pending):
                arrays = {"current": c, "previous": p, "flow": flow[j], "valid": valid[j]}
                with atomic_output(folder / f"pair_{len(names):06d}.npz") as handle:
                    np.savez_compressed(handle, **arrays)
                names.append(name)
                bar.update(1)
            pending.clear()

        previous_frame, previous_index = None, None
        label = clip.name
        for index, frame in enumerate(video.read_frames(clip, size=self.size)):
            if index % self.stride:
                continue
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if previous_frame is None:
                estimate.check_frame_size(frame.shape[0], frame.shape[1], self.method, str(clip))
            else:
                pending.append((frame, previous_frame, f"video/{label}/{index:06d}->{previous_index:06d}"))
                if len(pending) >= self.batch_size:
                    flush()
            previous_frame, previous_index = frame, index
            if self.max_pairs is not None and len(names) + len(pending) >= self.max_pairs:
                break
        if pending:
            flush()
        bar.close()
        if not names:
            warnings.warn(f"VideoFolderPairs: {clip} has fewer than two frames; skipped", stacklevel=3)
        manifest = {
            "source": str(clip), "method": self.method, "size": self.size, "stride": self.stride, "names": names
        }
        atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))
        return manifest

    # ---------------------------------------------------------------------------------------------- reading
    def __len__(self) -> int:
        if self.records is None:
            self.prepare()
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.pair(index)

    def pair(self, index: int, generator: torch.Generator | None = None) -> dict:
        """Sample ``index``, its augmentation drawn from ``generator`` (default :func:`~reconet_lib.pairs.sample_generator`)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for VideoFolderPairs of length {n}")
        index %= n
        key, i, name = self.records[index]
        with np.load(self.cache_dir / key / f"pair_{i:06d}.npz") as data:
            flow = data["flow"].transpose(1, 2, 0)  # stored (2, H, W)
            sample = make_sample(data["current"], data["previous"], flow, data["valid"], name)
        if self.augment is not None:
            sample = self.augment(sample, generator if generator is not None else sample_generator(self.seed, index))
        return sample
