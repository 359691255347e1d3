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


#: Source times of :func:`make_vfr_clip`: ten frames 0.1 s apart, then one a second up to 10 s (a phone's VFR).
VFR_TIMES = [round(0.1 * k, 1) for k in range(10)] + [float(s) for s in range(1, 11)]


def make_vfr_clip(path: Path, audio_seconds: float = 11) -> Path:
    """A variable-frame-rate MP4 (frames at :data:`VFR_TIMES`) with ``audio_seconds`` of sine tone, by ffmpeg:
    a 10 frames/s test pattern of which ``select`` keeps the first second and then every tenth frame, written
    with ``-fps_mode vfr`` so the kept frames keep their times."""
    subprocess.run(
        [codec.ffmpeg_exe(), "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=10:d=10.05",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={audio_seconds}",
         "-vf", "select='lt(t\\,0.95)+not(mod(n\\,10))'", "-fps_mode", "vfr",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        check=True, capture_output=True,
    )
    return path


def frame_and_audio_times(path: Path) -> tuple[list[float], float]:
    """Presentation time of every video frame (seconds, by PyAV) and the audio track's duration in seconds."""
    import av

    with av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        end = max(float((packet.pts + packet.duration) * packet.time_base)
                  for packet in container.demux(stream) if packet.pts is not None)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return times, end - start
