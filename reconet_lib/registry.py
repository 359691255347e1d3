"""The registry of downloads: every file the project fetches, with its URL, size and sha256.

Each file is a :class:`Resource`; where a size or hash is not known in advance its ``note`` says why
(``docs/conventions.md``, "Files and downloads"). :data:`REGISTRY` holds the built-in ones by name
(VGG-16 and RAFT weights, the style images, MPI Sintel, Scene Flow, FlyingChairs2); add your own with
:func:`register`. Fetching them is :mod:`reconet_lib.download`'s job, unpacking :mod:`reconet_lib.archive`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UserInputError


@dataclass(frozen=True)
class Resource:
    """One downloadable file.

    Attributes:
        name: registry key, e.g. ``"mpi_sintel"`` or ``"style_candy"``.
        url: where the file is downloaded from.
        filename: the file's name on disk (also the name looked up in a mirror).
        size: exact size in bytes, or ``None`` where it is not known in advance (see ``note``).
        sha256: lower-case hex digest, or ``None`` where it is not known in advance (see ``note``).
        note: what the file holds and why a size or hash is unknown, where that is so.
        approx_bytes: a rough size for planning disk space (never used for verification).
        sha256_prefix: leading hex digits of the sha256 checked when the full digest is not known
            (torchvision publishes 8 of them in its weight file names).
        url_key: names the environment variable ``RECONET_BASE_URL_<url_key>`` that replaces everything
            before the file name in ``url`` (empty: not overridable).
    """

    name: str
    url: str
    filename: str
    size: int | None
    sha256: str | None
    note: str = ""
    approx_bytes: int | None = None
    sha256_prefix: str | None = None
    url_key: str = ""

    def describe_size(self) -> str:
        """Human-readable size: exact when known, ``"about ..."`` when only a rough figure exists."""
        if self.size is not None:
            return format_bytes(self.size)
        if self.approx_bytes is not None:
            return f"about {format_bytes(self.approx_bytes)}"
        return "unknown"


def format_bytes(n: int) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as dataset pages quote them)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# The built-in resources
# ---------------------------------------------------------------------------------------------

_STYLE_BASE = "https://raw.githubusercontent.com/skq024/Real-time-Coherent-Style-Transfer-For-Videos/master/styles/"
_SCENEFLOW_BASE = "https://lmb.informatik.uni-freiburg.de/data/SceneFlowDatasets_CVPR16/Release_april16/data/"
_SCENEFLOW_PAGE = "https://lmb.informatik.uni-freiburg.de/resources/datasets/SceneFlowDatasets.en.html"
_NO_HASH = (
    "no sha256 is published by the dataset authors that this project could cite (their download page could not "
    "be consulted when it was registered), so it is unknown until you download it; record it then with register()"
)
_GB = 1_000_000_000

# (file name, size in bytes, sha256) of the five style images of the original ReCoNet code.
_STYLE_FILES = (
    ("autoportrait.jpg", 59925, "bc69786e510e41242aa22fcd4044b9d4b6829ed2b61fac09c1c688ffadfbde2a"),
    ("candy.jpg", 376101, "1af09b2c18a6674b7d88849cb87564dd77e1ce04d1517bb085449b614cc0c8d8"),
    ("composition.jpg", 92740, "6252079eb470f14495848a02ff93991cef43a678e7b64ab427df130c755599f7"),
    ("edtaonisl.jpg", 251507, "6993247396a33b7297b4dc0f59e8114f223ac5a3ab604f251f9f5e25c592e44f"),
    ("udnie.jpg", 39795, "270be68e7c6c282c9edb62ab7bcd345b1fb6b6cebb5d1f10d9a2d21915f69a8a"),
)


def _sceneflow(subset: str, folder: str, filename: str, what: str, approx_gb: float | None) -> Resource:
    size_note = (
        f"exact size unknown (about {approx_gb:g} GB according to third-party download scripts)"
        if approx_gb
        else "size unknown"
    )
    return Resource(
        name=filename.split(".")[0].replace("__", "_"),
        url=f"{_SCENEFLOW_BASE}{subset}/{folder}/{filename}",
        filename=filename,
        size=None,
        sha256=None,
        note=f"Scene Flow {subset}: {what}. {size_note}; {_NO_HASH}. "
        f"Research use only, see {_SCENEFLOW_PAGE} (the page also offers torrents).",
        approx_bytes=int(approx_gb * _GB) if approx_gb else None,
        url_key="SCENEFLOW",
    )


_PYTORCH_BASE = "https://download.pytorch.org/models/"
_PREFIX_NOTE = (
    "torchvision publishes no byte count or full sha256 for its weight files; the 8 hex digits in the file "
    "name are the start of the file's sha256 (torch.hub checks the same prefix), and that prefix is verified"
)


def _weights(name: str, filename: str, what: str, approx_mb: float) -> Resource:
    return Resource(
        name=name,
        url=_PYTORCH_BASE + filename,
        filename=filename,
        size=None,
        sha256=None,
        sha256_prefix=filename.rsplit("-", 1)[-1].split(".")[0],
        note=f"{what} (torchvision, BSD-3-Clause code; see torchvision's documentation for the weights' terms). "
        f"About {approx_mb:g} MB; {_PREFIX_NOTE}.",
        approx_bytes=int(approx_mb * 1_000_000),
        url_key="PYTORCH",
    )


def builtin_resources() -> dict[str, Resource]:
    """The resources the project knows about, keyed by name (a fresh dict on every call)."""
    resources = [
        Resource(
            name="mpi_sintel",
            url="http://files.is.tue.mpg.de/sintel/MPI-Sintel-complete.zip",
            filename="MPI-Sintel-complete.zip",
            size=None,
            sha256=None,
            note="MPI Sintel (Butler et al. 2012): training/{clean,final,albedo} frames, training/flow "
            "(.flo, frame k -> k+1), training/occlusions and training/invalid masks (white = occluded), "
            "plus the test frames. About 5.3 GB; the exact byte count and a checksum are not published "
            "(US mirror: http://sintel.cs.washington.edu/MPI-Sintel-complete.zip).",
            approx_bytes=int(5.3 * _GB),
            url_key="SINTEL",
        ),
        Resource(
            name="flyingchairs2",
            url="https://lmb.informatik.uni-freiburg.de/data/FlyingChairs2.zip",
            filename="FlyingChairs2.zip",
            size=None,
            sha256=None,
            note="FlyingChairs2 (Ilg et al. 2018): image pairs img_0/img_1 with forward flow_01 and backward "
            "flow_10 (.flo), occlusions occ_01/occ_10 (white = occluded) and motion boundaries. Exact size "
            f"unknown (about 31 GB according to third-party code); {_NO_HASH}. Research use only, see "
            "https://lmb.informatik.uni-freiburg.de/resources/datasets/FlyingChairs.en.html",
            approx_bytes=31 * _GB,
            url_key="CHAIRS",
        ),
        _sceneflow("Monkaa", "raw_data", "monkaa__frames_finalpass.tar",
                   "final-pass stereo frames (PNG, 960x540)", 38),
        _sceneflow("Monkaa", "derived_data", "monkaa__optical_flow.tar.bz2",
                   "optical flow into_future and into_past (.pfm) for both views", None),
        _sceneflow("Monkaa", "derived_data", "monkaa__motion_boundaries.tar.bz2",
                   "motion-boundary masks (PGM) for both views and directions", None),
        _sceneflow("Monkaa", "derived_data", "monkaa__disparity.tar.bz2",
                   "disparity maps (.pfm); not needed for ReCoNet training", 13),
        _sceneflow("FlyingThings3D", "raw_data", "flyingthings3d__frames_finalpass.tar",
                   "final-pass stereo frames (PNG, 960x540), TRAIN and TEST splits", 42),
        _sceneflow("FlyingThings3D", "derived_data", "flyingthings3d__optical_flow.tar.bz2",
                   "optical flow into_future and into_past (.pfm) for both views", 311),
        _sceneflow("FlyingThings3D", "derived_data", "flyingthings3d__motion_boundaries.tar.bz2",
                   "motion-boundary masks (PGM) for both views and directions", None),
        _sceneflow("FlyingThings3D", "derived_data", "flyingthings3d__disparity.tar.bz2",
                   "disparity maps (.pfm); not needed for ReCoNet training", 93),
    ]
    resources += [
        _weights("vgg16_imagenet", "vgg16-397923af.pth", "VGG-16 ImageNet weights (VGG16_Weights.IMAGENET1K_V1)", 553),
        _weights("raft_large", "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
                 "RAFT large weights (Raft_Large_Weights.C_T_SKHT_V2, torchvision's default)", 21),
        _weights("raft_small", "raft_small_C_T_V2-01064c6d.pth",
                 "RAFT small weights (Raft_Small_Weights.C_T_V2, torchvision's default)", 4),
    ]
    for filename, size, sha in _STYLE_FILES:
        stem = filename.rsplit(".", 1)[0]
        resources.append(
            Resource(
                name=f"style_{stem}",
                url=_STYLE_BASE + filename,
                filename=filename,
                size=size,
                sha256=sha,
                note="style image of the original ReCoNet code (see reconet_lib.styles for provenance and licence)",
                url_key="STYLES",
            )
        )
    return {r.name: r for r in resources}


#: Every known resource by name. Add your own with :func:`register`.
REGISTRY: dict[str, Resource] = builtin_resources()


def register(res: Resource, *, replace: bool = False) -> Resource:
    """Add a resource to :data:`REGISTRY` so that ``fetch(res.name)`` works.

    Re-registering an identical resource is a no-op; a different resource under a taken name needs
    ``replace=True``.
    """
    if not isinstance(res, Resource):
        raise UserInputError(f"register() takes a reconet_lib.download.Resource, got {type(res).__name__}")
    if not res.name or not res.url or not res.filename:
        raise UserInputError(f"a resource needs a name, a url and a filename; got {res!r}")
    if Path(res.filename).name != res.filename or res.filename in {".", ".."}:
        raise UserInputError(f"filename must be a bare file name without folders; got {res.filename!r}")
    if res.sha256 is not None and (len(res.sha256) != 64 or any(c not in "0123456789abcdef" for c in res.sha256)):
        raise UserInputError(f"sha256 must be 64 lower-case hex digits or None; got {res.sha256!r}")
    if res.sha256_prefix is not None and (
        not 1 <= len(res.sha256_prefix) <= 64 or any(c not in "0123456789abcdef" for c in res.sha256_prefix)
    ):
        raise UserInputError(f"sha256_prefix must be lower-case hex digits or None; got {res.sha256_prefix!r}")
    old = REGISTRY.get(res.name)
    if old is not None and old != res and not replace:
        raise UserInputError(
            f"a different resource is already registered as {res.name!r} ({old.url}); "
            "pick another name or pass replace=True"
        )
    REGISTRY[res.name] = res
    return res


def resource(name: str) -> Resource:
    """The registered resource called ``name``; an unknown name raises a UserInputError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UserInputError(
            f"no download is registered as {name!r}. Known names: {known}. "
            "Add your own with reconet_lib.download.register(Resource(...))."
        ) from None
