"""reconet_lib: the helper library of the ReCoNet tutorial series.

Submodules are imported on demand (``from reconet_lib import flow``); importing the package itself is cheap.
"""
__version__ = "0.1.0"


def load_model(checkpoint_path, device=None, dtype=None):
    """Load a trained ReCoNet from a checkpoint, ready to run in eval mode (see :mod:`reconet_lib.checkpoint`)."""
    # Imported here on purpose: importing the package (which every submodule import does) stays cheap.
    from .checkpoint import load_model as _load_model

    return _load_model(checkpoint_path, device=device, dtype=dtype)
