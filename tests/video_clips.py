"""Small generated clips shared by the video, stylising and reliability tests."""
from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from reconet_lib import codec

T, H, W = 10, 48, 64


def smooth_clip(frames=T, height=H, width=W, seed=0) -> np.ndarray:
    """A small clip of smooth gradients with a moving bright square: ``(T, H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), 0.5 + 0 * x], axis=-1)
    clip = []
    for t in range(frames):
        frame = base.copy()
        top, left = (2 + t) % max(height - 8, 1), (3 * t) % max(width - 8, 1)
        frame[top:top + 8, left:left + 8] = rng.uniform(0.6, 1.0, size=3)
        clip.append((frame * 255).round().astype(np.uint8))
    return np.stack(clip)


def ffmpeg_streams(path: Path) -> list[str]:
    """The stream kinds (``Video``/``Audio``) that ``ffmpeg -i`` reports for a file, read from its stderr."""
    result = subprocess.run([codec.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return re.findall(r"Stream #0:\d+.*?: (Video|Audio): ", result.stderr)


def make_clip_with_audio(path: Path, frames=T, fps=10) -> Path:
    """A test-pattern video with a sine tone, made by the bundled ffmpeg binary (lavfi sources)."""
    subprocess.run(
        [codec.ffmpeg_exe(), "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate={fps}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000",
         "-frames:v", str(frames), "-t", f"{float(frames / Fraction(str(fps))):.6f}",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        check=True, capture_output=True,
    )
    return path


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files or folders a writer may have left behind."""
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".probe-" in p.name)
