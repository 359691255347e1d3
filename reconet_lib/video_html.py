"""Showing a video in a notebook: an H.264 MP4 embedded in a ``<video>`` element (Colab and JupyterLab)."""
from __future__ import annotations

import base64
import os
from pathlib import Path

from IPython.display import HTML

from .errors import UserInputError


def show_video(path: str | os.PathLike, width: int = 480, *, loop: bool = True, max_megabytes: float = 40):
    """An IPython ``HTML`` object that plays an H.264 MP4 in the notebook.

    The file is embedded as base64 in a ``<video controls>`` element, so the notebook stays self-contained;
    keep embedded clips small (a few MB).

    Raises:
        UserInputError: the file is missing or larger than ``max_megabytes``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"video {path} does not exist; write it first (write_video / stylize_video)")
    megabytes = path.stat().st_size / 2**20
    if megabytes > max_megabytes:
        raise UserInputError(
            f"{path} is {megabytes:.0f} MB, too large to embed in a notebook (limit {max_megabytes} MB); "
            "write a shorter or smaller clip, or open the file in a video player"
        )
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    attributes = "controls playsinline" + (" loop" if loop else "")
    return HTML(
        f'<video width="{int(width)}" {attributes}>'
        f'<source src="data:video/mp4;base64,{data}" type="video/mp4">'
        "Your browser cannot play this H.264 video.</video>"
    )
