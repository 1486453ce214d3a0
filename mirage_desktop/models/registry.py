"""The one list of model files the app can download: where each comes from, what it must hash to, and who needs it.

Every other part of the app (the face detection and LivePortrait stages, ``mirage-models``, the window's download
dialog) takes paths and digests from here; nothing else spells a model file name or a repository id.

Digests are the Git LFS object ids the Hugging Face hub publishes for each file (the LFS ``oid sha256`` is the
sha256 of the file's bytes). Where a digest could not be found from a public page, the entry has ``sha256=None``
and is shown as *unverified* instead of carrying an invented number.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

logger = logging.getLogger(__name__)

#: Model groups (one per model stage; ``mirage_desktop.stages.specs`` says which stage needs which).
FEATURES: tuple[str, ...] = ("scrfd", "liveportrait")
#: Groups ``mirage-models download`` accepts.
GROUPS: tuple[str, ...] = (*FEATURES, "all")

#: Default SCRFD file name inside ``<models_dir>/scrfd/`` (the face detection stage uses the same name).
DEFAULT_SCRFD_FILE = "scrfd_2.5g_bnkps.onnx"

LIVEPORTRAIT_REPO = "KwaiVGI/LivePortrait"
#: Commit 2d03940694f20c2dc8d337605a22b8a4c345b842 ("fix: upload gifs", cleardusk, 2024-07-08) is on the repo's
#: main line right after "chore: upload weights" (6d116d1), the only commit that touched the weight files. The hub
#: serves this very file tree at that commit:
#: https://huggingface.co/KwaiVGI/LivePortrait/blob/2d03940694f20c2dc8d337605a22b8a4c345b842/liveportrait/retargeting_models/stitching_retargeting_module.pth
#: (The organisation has since been renamed KlingTeam; the hub redirects the old repo id.)
LIVEPORTRAIT_REVISION = "2d03940694f20c2dc8d337605a22b8a4c345b842"

LIVEPORTRAIT_LICENCE = "MIT (LivePortrait weights, KwaiVGI/LivePortrait model card)"
LIVEPORTRAIT_LICENCE_URL = "https://huggingface.co/KwaiVGI/LivePortrait"
INSIGHTFACE_LICENCE = "InsightFace pretrained models: non-commercial research use only"
INSIGHTFACE_LICENCE_URL = "https://github.com/deepinsight/insightface#license"

def download_hint(group: str) -> str:
    """What a user runs to get a model group's files: the one spelling of that advice in the app."""
    return f"run `mirage-models download {group}` (or press Download models... in the window)"


_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class RegistryEntry:
    """One downloadable file. ``local_path`` is relative to the model directory, with forward slashes."""

    feature: str
    repo_id: str
    revision: str
    remote_path: str
    local_path: str
    size: int | None
    sha256: str | None
    licence: str
    licence_url: str
    source: str = ""  # where the size and digest were read (for people checking the pins)

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"Unknown feature {self.feature!r} for {self.local_path}; choose from {FEATURES}")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"sha256 of {self.local_path} must be 64 lower-case hex digits, got {self.sha256!r}")
        if self.sha256 is None and not _COMMIT.fullmatch(self.revision):
            raise ValueError(f"{self.local_path} has neither a pinned digest nor a pinned commit: pin one of them")
        posix = PurePosixPath(self.local_path)
        if posix.is_absolute() or ".." in posix.parts or not posix.parts:
            raise ValueError(f"local_path must be relative inside the model directory, got {self.local_path!r}")

    @property
    def name(self) -> str:
        return PurePosixPath(self.local_path).name

    @property
    def verified(self) -> bool:
        """True when the file can be checked against a pinned digest."""
        return self.sha256 is not None

    def target(self, models_dir: Path) -> Path:
        return Path(models_dir).joinpath(*PurePosixPath(self.local_path).parts)


def _lp(remote_path: str, size: int, sha256: str, source: str) -> RegistryEntry:
    return RegistryEntry(
        feature="liveportrait",
        repo_id=LIVEPORTRAIT_REPO,
        revision=LIVEPORTRAIT_REVISION,
        remote_path=remote_path,
        local_path=remote_path,  # the model dir keeps the official tree: liveportrait/base_models/...
        size=size,
        sha256=sha256,
        licence=LIVEPORTRAIT_LICENCE,
        licence_url=LIVEPORTRAIT_LICENCE_URL,
        source=source,
    )


# Sources of the pins below (LFS pointer = "oid sha256:<digest> / size <bytes>" of the same path):
# - sha256 from the official repo's file pages ("Git LFS Details"):
#     appearance: https://huggingface.co/KwaiVGI/LivePortrait/blob/refs%2Fpr%2F3/liveportrait/base_models/appearance_feature_extractor.pth
#     motion:     https://huggingface.co/KwaiVGI/LivePortrait/blob/refs%2Fpr%2F25/liveportrait/base_models/motion_extractor.pth
#     spade:      https://huggingface.co/KwaiVGI/LivePortrait/blob/0f49c88f223b3ebceb86dabf2d81e410b81c3050/liveportrait/base_models/spade_generator.pth
#     stitching:  https://huggingface.co/KwaiVGI/LivePortrait/blob/2d03940694f20c2dc8d337605a22b8a4c345b842/liveportrait/retargeting_models/stitching_retargeting_module.pth
#   Those pages round the size (3.39 MB, 113 MB, 222 MB, 2.39 MB); every file has a single version (6d116d1).
# - exact byte sizes, and the warping_module digest, from LFS pointers of verbatim mirrors whose other digests
#   match the official pages above:
#     https://huggingface.co/lytanshade/liveportrait/commit/fe5d9d919fa05d03db537c37081e340563278ef1 (F, M, G, W)
#     https://huggingface.co/camenduru/LivePortrait/commit/3874282f63f761d594fd4a080eb45eb616d9158a (F, M)
#     https://huggingface.co/jbilcke-hf/model-cocktail/blob/88aff07e0be4cdb5d648e876e01172696c8ba9d9/liveportrait/warping_module.pth (W digest)
#     https://huggingface.co/jbilcke-hf/model-cocktail/commit/bcbde9d5b556e662ca7aff662679eb21db165ade (S: same
#       digest 3652d5a3... with size 2393098)
LIVEPORTRAIT_ENTRIES: tuple[RegistryEntry, ...] = (
    _lp(
        "liveportrait/base_models/appearance_feature_extractor.pth",
        3_387_959,
        "5279bb8654293dbdf327030b397f107237dd9212fb11dd75b83dfb635211ceb5",
        "hub file page (sha256) + LFS pointer lytanshade/liveportrait@fe5d9d9 (size)",
    ),
    _lp(
        "liveportrait/base_models/motion_extractor.pth",
        112_545_506,
        "251e6a94ad667a1d0c69526d292677165110ef7f0cf0f6d199f0e414e8aa0ca5",
        "hub file page (sha256) + LFS pointer lytanshade/liveportrait@fe5d9d9 (size)",
    ),
    _lp(
        "liveportrait/base_models/warping_module.pth",
        182_180_086,
        "2f61a6f265fe344f14132364859a78bdbbc2068577170693da57fb96d636e282",
        "LFS pointers of mirrors lytanshade/liveportrait@fe5d9d9 and jbilcke-hf/model-cocktail",
    ),
    _lp(
        "liveportrait/base_models/spade_generator.pth",
        221_813_590,
        "4780afc7909a9f84e24c01d73b31a555ef651521a1fe3b2429bd04534d992aee",
        "hub file page (sha256) + LFS pointer lytanshade/liveportrait@fe5d9d9 (size)",
    ),
    _lp(
        "liveportrait/retargeting_models/stitching_retargeting_module.pth",
        2_393_098,
        "3652d5a3f95099141a56986aaddec92fadf0a73c87a20fac9a2c07c32b28b611",
        "hub file page (sha256) + LFS pointer jbilcke-hf/model-cocktail@bcbde9d (size)",
    ),
)

# SCRFD 2.5G with keypoints (InsightFace's ONNX export). No public page giving this file's LFS digest and size at a
# pinned commit could be found, so the entry is unverified: it is downloaded from the mirror's main branch and
# shown as "unverified" in the status table. Pin it (revision, size, sha256) as soon as the digest is known.
SCRFD_ENTRIES: tuple[RegistryEntry, ...] = (
    # SCRFD-2.5GF with 5 keypoints, dynamic input size: InsightFace's `det_2.5g.onnx` from its v0.7 release pack
    # `buffalo_m.zip`, mirrored unchanged on the Hugging Face hub as `immich-app/buffalo_m` `detection/model.onnx`.
    # Size and sha256 are those of the InsightFace file (3,292,009 bytes, 041f73f4...): the same digest is published
    # for `det_2.5g.onnx` in several independent projects' model manifests, and it is the test copy in
    # ../shared/models (REGISTRY.md). The digest check makes the mirror's revision irrelevant to integrity.
    RegistryEntry(
        feature="scrfd",
        repo_id="immich-app/buffalo_m",
        revision="main",
        remote_path="detection/model.onnx",
        local_path=f"scrfd/{DEFAULT_SCRFD_FILE}",
        size=3_292_009,
        sha256="041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
        licence=INSIGHTFACE_LICENCE,
        licence_url=INSIGHTFACE_LICENCE_URL,
        source="InsightFace v0.7 buffalo_m.zip det_2.5g.onnx, via the immich-app/buffalo_m hub mirror",
    ),
)

# The two landmark models the official cropper runs, from the same hub repo and commit as the LivePortrait weights,
# kept under their official paths so that an official ``pretrained_weights`` tree works as a model directory.
# They belong to the "liveportrait" group: the avatar's crops and its eye/lip ratios need them.
# - landmark.onnx (203 points, LivePortrait, MIT): size and LFS sha256 as in ../shared/models/REGISTRY.md (LFS pointer
#   of the verbatim mirror camenduru/LivePortrait-hf@866a537, pretrained_weights/liveportrait/landmark.onnx).
# - 2d106det.onnx (106 points, InsightFace buffalo_l, non-commercial): 5,030,888 bytes, sha256 f001b856..., the digest
#   InsightFace's buffalo_l / antelopev2 2d106det.onnx has in several independent projects' pinned manifests (one of
#   them pins this very path, insightface/models/buffalo_l/2d106det.onnx, of the LivePortrait hub repo).
LANDMARK_106_FILE = "insightface/models/buffalo_l/2d106det.onnx"
LANDMARK_203_FILE = "liveportrait/landmark.onnx"
LANDMARK_ENTRIES: tuple[RegistryEntry, ...] = (
    RegistryEntry(
        feature="liveportrait",
        repo_id=LIVEPORTRAIT_REPO,
        revision=LIVEPORTRAIT_REVISION,
        remote_path=LANDMARK_106_FILE,
        local_path=LANDMARK_106_FILE,
        size=5_030_888,
        sha256="f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf",
        licence=INSIGHTFACE_LICENCE,
        licence_url=INSIGHTFACE_LICENCE_URL,
        source="InsightFace buffalo_l 2d106det.onnx digest, as pinned by independent manifests of the same file",
    ),
    RegistryEntry(
        feature="liveportrait",
        repo_id=LIVEPORTRAIT_REPO,
        revision=LIVEPORTRAIT_REVISION,
        remote_path=LANDMARK_203_FILE,
        local_path=LANDMARK_203_FILE,
        size=114_666_491,
        sha256="31d22a5041326c31f19b78886939a634a5aedcaa5ab8b9b951a1167595d147db",
        licence=LIVEPORTRAIT_LICENCE,
        licence_url=LIVEPORTRAIT_LICENCE_URL,
        source="LFS pointer of the verbatim mirror camenduru/LivePortrait-hf@866a537 (../shared/models/REGISTRY.md)",
    ),
)

#: Every file the app can download, in download order (small detector first).
REGISTRY: tuple[RegistryEntry, ...] = (*SCRFD_ENTRIES, *LIVEPORTRAIT_ENTRIES, *LANDMARK_ENTRIES)


def entries_for(group: str, registry: Sequence[RegistryEntry] = REGISTRY) -> list[RegistryEntry]:
    """The entries of a feature, or all of them for ``"all"``."""
    group = group.strip().lower()
    if group not in GROUPS:
        raise ValueError(f"Unknown model group {group!r}; choose from: {', '.join(GROUPS)}")
    return [e for e in registry if group == "all" or e.feature == group]


def find_entry(local_path: str, registry: Iterable[RegistryEntry] = REGISTRY) -> RegistryEntry:
    for entry in registry:
        if entry.local_path == local_path:
            return entry
    raise KeyError(f"No registry entry for {local_path!r}")


def scrfd_path(models_dir: Path) -> Path:
    """Where the default SCRFD model lives in a model directory."""
    return find_entry(f"scrfd/{DEFAULT_SCRFD_FILE}").target(models_dir)


def liveportrait_paths(models_dir: Path) -> dict[str, Path]:
    """File name (e.g. ``warping_module.pth``) -> path in the model directory, for the LivePortrait loader."""
    return {e.name: e.target(models_dir) for e in LIVEPORTRAIT_ENTRIES}


def landmark_paths(models_dir: Path) -> dict[str, Path]:
    """``2d106det.onnx`` and ``landmark.onnx`` -> their paths in the model directory (official layout)."""
    return {e.name: e.target(models_dir) for e in LANDMARK_ENTRIES}
