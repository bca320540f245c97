"""Where every file of the MS-SL layout lives; paths are built here and nowhere else.

<root>/<collection>/
  FeatureData/<feature>/            BigFile: feature.bin, id.txt, shape.txt, video2frames.txt
  FeatureData/<feature>.hdf5        or per-video HDF5 (key = video id, value (n_frames, D))
  FeatureData/<feature>/frame_times.json   optional {video_id: [[start, end], ...]} seconds
  video_files.json                  optional: where each video's source file is (``prvr extract``)
  TextData/<collection><split>.caption.txt
  TextData/<text_feature>_<collection>_query_feat.hdf5
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prvr_cli.errors import PrvrError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    root: Path
    collection: str

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        check_name(self.collection, "collection name")

    @property
    def base(self) -> Path:
        return self.root / self.collection

    @property
    def feature_root(self) -> Path:
        return self.base / "FeatureData"

    @property
    def text_root(self) -> Path:
        return self.base / "TextData"

    def bigfile_dir(self, feature: str) -> Path:
        return self.feature_root / feature

    def video_hdf5(self, feature: str) -> Path:
        return self.feature_root / f"{feature}.hdf5"

    def frame_times(self, feature: str) -> Path:
        return self.feature_root / feature / "frame_times.json"

    def caption_file(self, split: str) -> Path:
        return self.text_root / f"{self.collection}{split}.caption.txt"

    def query_hdf5(self, text_feature: str) -> Path:
        return self.text_root / f"{text_feature}_{self.collection}_query_feat.hdf5"

    def moments(self) -> Path:
        return self.text_root / f"{self.collection}_moments.json"

    def ground_truth(self) -> Path:
        return self.base / "ground_truth.npz"

    def synth_record(self) -> Path:
        return self.base / "synth.json"

    def extract_record(self) -> Path:
        return self.base / "extract.json"

    def video_files(self) -> Path:
        """{"root": the videos folder, "files": {video id: path under it}}, written by ``prvr extract``."""
        return self.base / "video_files.json"

    def extract_work(self, feature: str | None = None) -> Path:
        root = self.base / ".extract"
        return root / feature if feature else root

    def splits(self) -> list[str]:
        return [s for s in SPLITS if self.caption_file(s).is_file()]

    def visual_features(self) -> list[str]:
        """Names of the visual feature sets present (BigFile folders and HDF5 files)."""
        if not self.feature_root.is_dir():
            return []
        names = {p.name for p in self.feature_root.iterdir() if (p / "feature.bin").is_file()}
        names |= {p.stem for p in self.feature_root.glob("*.hdf5")}
        return sorted(names)

    def text_features(self) -> list[str]:
        suffix = f"_{self.collection}_query_feat.hdf5"
        if not self.text_root.is_dir():
            return []
        return sorted(p.name[: -len(suffix)] for p in self.text_root.glob(f"*{suffix}"))

    def pick_visual(self, feature: str | None) -> str:
        return _pick(feature, self.visual_features(), "visual feature", self.feature_root)

    def pick_text(self, feature: str | None) -> str:
        return _pick(feature, self.text_features(), "text feature", self.text_root)


def run_layout(ckpt: dict, data_root: str | Path | None = None) -> Layout:
    """The dataset a checkpoint was trained on (at ``data_root`` if it moved since)."""
    ds = ckpt["dataset"]
    return Layout(Path(data_root or ds["root"]), ds["collection"])


def video_id(stem: str) -> str:
    """A video id from a file name's stem: characters other than letters, digits, '-', '_' and
    '.' become '_' (ids go into frame ids, caption ids and file names)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def check_name(name: str, what: str) -> str:
    """A name that becomes one folder or file name: no separators, not '.' or '..', so that
    ``--name ../escape`` cannot write outside the root it is given."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise PrvrError(f"{what} {name!r}: must be a plain folder name (no '/', '\\', '..' or outer spaces)")
    return name


def _pick(asked: str | None, present: list[str], what: str, where: Path) -> str:
    if asked:
        if asked not in present:
            have = ", ".join(present) or "none"
            raise PrvrError(f"{where}: no {what} named {asked!r} (present: {have})")
        return asked
    if len(present) == 1:
        return present[0]
    if not present:
        raise PrvrError(f"{where}: no {what} found (is this an MS-SL dataset root?)")
    raise PrvrError(f"{where}: several {what}s ({', '.join(present)}); choose one")
