"""``run_extract``: raw videos (and captions) in, the MS-SL layout out.

Work per video lands atomically in ``<root>/<name>/.extract/<feature>/<video_id>.npz``, so a
re-run skips finished videos and an interrupt loses only the videos in flight (at most one group
of ``GROUP_VIDEOS``, which are encoded together). Each work file records the settings fingerprint
it was made with (``settings_of``) and the size and mtime of its video: a video whose settings or
file changed is re-extracted. Videos that do not decode are listed in
``.extract/<feature>/failures*.json`` with the same two keys and are not retried until one of
them (or ``--timeout``) changes. ``finalize`` (run at the end of an unsharded job, or by
``--merge`` after sharded ones) assembles the BigFile, the frame times, the caption files, the
token-feature HDF5 and ``extract.json`` from the videos in the folder now whose work matches the
current settings, always in sorted video order, so shards merged equal one run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prvr_cli.atomic import atomic_path, write_json, write_text
from prvr_cli.core.provenance import file_sha256, versions
from prvr_cli.data.bigfile import BigFileWriter
from prvr_cli.data.captions import write_captions
from prvr_cli.data.hdf5 import write_hdf5
from prvr_cli.data.layout import SPLITS, Layout
from prvr_cli.errors import PrvrError
from prvr_cli.features.captions import assign_split, read_caption_jsonl
from prvr_cli.features.decode import DecodeError, decode_video, list_videos
from prvr_cli.lock import folder_lock


@dataclass(kw_only=True)
class ExtractSpec:
    """One extract job, as ``prvr extract`` takes it; built with keywords."""

    videos_dir: Path
    out: Path
    name: str
    visual: str = "clip"
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    i3d_checkpoint: str | None = None
    resnet_checkpoint: str | None = None
    fps: float | None = None  # image backbones: features per second (default 1)
    clip_seconds: float | None = None  # or a fixed step; I3D windows default to 1.5 s (TVR)
    captions: Path | None = None
    text: str | None = None  # roberta | clip
    text_model: str | None = None
    batch_size: int = 32
    workers: int = 2
    shard: tuple[int, int] = (0, 1)
    timeout: float = 120.0

    def __post_init__(self):
        for option, value in (
            ("--fps", self.fps),
            ("--clip-seconds", self.clip_seconds),
            ("--batch-size", self.batch_size),
            ("--timeout", self.timeout),
        ):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise PrvrError(f"{option} {value:g}: must be a finite number > 0")
        if self.workers < 1:
            raise PrvrError(f"--workers {self.workers}: must be >= 1")
        if self.fps is not None and self.clip_seconds is not None:
            raise PrvrError(
                f"--fps {self.fps:g} and --clip-seconds {self.clip_seconds:g}: give one of them (the step is 1/fps)"
            )
        Layout(self.out, self.name)  # refuses a --name that is not a plain folder name

    def step(self) -> float:
        if self.clip_seconds:
            return float(self.clip_seconds)
        if self.fps:
            return 1.0 / float(self.fps)
        from prvr_cli.features.backbones import visual_class

        return visual_class(self.visual).default_step


GROUP_VIDEOS = 4  # videos encoded together (batches span them); a fixed grid, see run_extract


REASONS = ("settings changed", "file changed")  # why a video is extracted again


def _save_video(work: Path, vid: str, feats: np.ndarray, times: np.ndarray, settings: str, source) -> None:
    with atomic_path(work / f"{vid}.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            feats=feats.astype(np.float32),
            times=times.astype(np.float32),
            settings=np.array(settings),
            source=np.array(source, dtype=np.int64),
        )


def _source(path: Path) -> list[int]:
    """[size, mtime in ns] of a video (of the link itself when it is a broken symlink): a
    replaced or rewritten file has another one."""
    try:
        st = path.stat()
    except OSError:
        try:
            st = path.lstat()
        except OSError:  # deleted meanwhile
            return [-1, -1]
    return [int(st.st_size), int(st.st_mtime_ns)]


def _work_state(path: Path) -> tuple[str | None, list[int] | None]:
    """(settings fingerprint, source) a work file was made with; (None, None) for work files of
    earlier versions, which are redone."""
    try:
        with np.load(path) as z:
            if "settings" not in z.files or "source" not in z.files:
                return None, None
            return str(z["settings"]), [int(x) for x in z["source"]]
    except (OSError, ValueError):
        return None, None


def settings_of(spec: ExtractSpec, backbone) -> dict:
    """Everything a video's features depend on besides the video itself: the backbone as it
    describes itself (model, tag or checkpoint path, input size), the time grid, and the content
    hash of each local checkpoint file (a file replaced at the same path changes the features)."""
    from prvr_cli.features.backbones import visual_class

    checkpoints = {}
    for option in visual_class(spec.visual).checkpoint_options:
        value = getattr(spec, option)
        if value and Path(value).is_file():
            checkpoints[option] = file_sha256(value)
    return {
        "visual": backbone.describe(),
        "step_seconds": spec.step(),
        "frames_per_step": backbone.frames_per_step,
        "checkpoints": checkpoints,
    }


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _status(vid: str, path: Path, work: Path, settings: str, failures: dict, timeout: float) -> str:
    """done | failed (recorded, nothing changed since) | new | one of ``REASONS``."""
    npz = work / f"{vid}.npz"
    if npz.is_file():
        made_with, source = _work_state(npz)
        if made_with != settings:
            return "settings changed"
        return "done" if source == _source(path) else "file changed"
    f = failures.get(vid)
    if f is None:
        return "new"
    if f.get("settings") != settings or f.get("timeout") != timeout:
        return "settings changed"
    return "failed" if f.get("source") == _source(path) else "file changed"


def _listing(ids, limit: int = 5) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:limit]) + (f", ... (+{len(ids) - limit} more)" if len(ids) > limit else "")


def _build_visual(spec: ExtractSpec, device):
    from prvr_cli.features.backbones import build_visual

    return build_visual(
        spec.visual,
        clip_model=spec.clip_model,
        clip_pretrained=spec.clip_pretrained,
        i3d_checkpoint=spec.i3d_checkpoint,
        resnet_checkpoint=spec.resnet_checkpoint,
        device=device,
        batch_size=spec.batch_size,
    )


def _build_text(spec: ExtractSpec, device):
    from prvr_cli.features.text import build_text

    return build_text(
        spec.text or "roberta",
        model=spec.text_model,
        clip_model=spec.clip_model,
        clip_pretrained=spec.clip_pretrained,
        device=device,
        batch_size=spec.batch_size,
    )


def run_extract(spec: ExtractSpec, device, progress=None, log=None) -> dict:
    """Extract the visual features of this shard's videos; finalize when unsharded.

    Returns the summary: counts, failures, and ``re_extracted`` {reason: [video ids]} for the
    videos whose earlier work was made with other settings or from another file. One job per
    shard of a dataset folder: a second is refused, naming the first (``prvr_cli.lock``)."""
    i, n = spec.shard
    if not (0 <= i < n):
        raise PrvrError(f"--shard {i}/{n}: expected I/N with 0 <= I < N")
    with folder_lock(Layout(spec.out, spec.name).base, f".prvr-extract-{i}of{n}.lock"):
        return _run_extract(spec, device, progress, log)


def _run_extract(spec: ExtractSpec, device, progress=None, log=None) -> dict:
    log = log or (lambda msg: None)
    i, n = spec.shard
    if spec.captions is not None:
        read_caption_jsonl(spec.captions)  # fail on a bad captions file before hours of video work
    videos = list_videos(spec.videos_dir)
    if not videos:
        raise PrvrError(f"{spec.videos_dir}: no video files found")
    # Videos are encoded in fixed groups of consecutive (sorted) ids, so a batch spans videos and
    # yet its composition never depends on sharding or on where a run was interrupted: the
    # features, to the byte, are the same for one run, a resumed run, and merged shards.
    ordered = sorted(videos)
    groups = [ordered[g : g + GROUP_VIDEOS] for g in range(0, len(ordered), GROUP_VIDEOS)][i::n]
    mine = [v for grp in groups for v in grp]
    # Every model is loaded before the first decode: a missing one fails now, not after hours of
    # video work.
    backbone = _build_visual(spec, device)
    text = None
    if spec.captions is not None and n == 1:
        text = _build_text(spec, device)
    elif spec.captions is not None:
        _build_text(spec, "cpu")  # a shard only checks that it loads; --merge encodes the captions
    layout = Layout(spec.out, spec.name)
    work = layout.extract_work(backbone.name)
    work.mkdir(parents=True, exist_ok=True)
    settings = settings_of(spec, backbone)
    key = fingerprint(settings)
    write_json(
        work / "backbone.json",
        {
            "visual": settings["visual"],
            "step_seconds": settings["step_seconds"],
            "frames_per_step": settings["frames_per_step"],
            "checkpoints": settings["checkpoints"],
            "fingerprint": key,
        },
    )
    fail_path = work / (f"failures_{i}of{n}.json" if n > 1 else "failures.json")
    failures = {f["video"]: f for f in json.loads(fail_path.read_text())} if fail_path.is_file() else {}
    failures = {v: f for v, f in failures.items() if v in videos}  # deleted videos are no failures
    status = {v: _status(v, videos[v], work, key, failures, spec.timeout) for v in mine}
    # A group is redone whole so that its batches are those of a fresh run; a recorded failure
    # whose file, settings and --timeout are unchanged does not make its group redo.
    todo_groups = [grp for grp in groups if any(status[v] not in ("done", "failed") for v in grp)]
    todo = [v for grp in todo_groups for v in grp]
    last_of_group = {grp[-1] for grp in todo_groups}
    re_extracted = {reason: sorted(v for v in mine if status[v] == reason) for reason in REASONS}
    for reason, ids in re_extracted.items():
        if ids:
            log(f"re-extracting {len(ids)} video(s), {reason}: {_listing(ids)}")
    kept = [v for v in mine if status[v] == "failed" and v not in todo]
    if kept:
        log(f"not retrying {len(kept)} video(s) that failed before and are unchanged: {_listing(kept)}")
    sampling = backbone.sampling(spec.step())
    t0, n_frames, n_encoded = time.perf_counter(), 0, 0
    task = progress.add_task("extracting", total=len(todo), info="") if progress else None

    def decode(vid):
        source = _source(videos[vid])  # before decoding: a file rewritten meanwhile is redone next time
        try:
            return vid, source, decode_video(videos[vid], sampling, spec.timeout), None
        except DecodeError as err:
            return vid, source, None, str(err)

    def flush(pending):
        if not pending:
            return
        feats = backbone.encode(np.concatenate([clips for _, clips, _, _ in pending]))
        start = 0
        for vid, clips, times, source in pending:
            _save_video(work, vid, feats[start : start + len(clips)], times, key, source)
            start += len(clips)

    try:
        with ThreadPoolExecutor(spec.workers) as pool:
            pending = []
            for vid, source, result, error in pool.map(decode, todo):
                if error is not None:
                    failures[vid] = {
                        "video": vid,
                        "file": str(videos[vid]),
                        "error": error,
                        "settings": key,
                        "timeout": spec.timeout,
                        "source": source,
                    }
                    (work / f"{vid}.npz").unlink(missing_ok=True)  # features of an older file or settings
                    log(f"skipped {videos[vid]}: {error}")
                else:
                    clips, times, _ = result
                    pending.append((vid, clips, times, source))
                    failures.pop(vid, None)
                    n_frames += clips.shape[0] * clips.shape[1]
                if vid in last_of_group:
                    flush(pending)
                    n_encoded += len(pending)
                    pending = []
                if progress:
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    progress.update(
                        task, advance=1, info=f"{n_encoded / elapsed:.2f} videos/s  {n_frames / elapsed:.1f} frames/s"
                    )
    finally:
        write_json(fail_path, sorted(failures.values(), key=lambda f: f["video"]))
    finished = {p.stem for p in work.glob("*.npz")} & set(mine)
    failed = sorted(v for v in failures if v in set(mine))
    summary = {
        "feature": backbone.name,
        "videos": len(mine),
        "done": len(finished),
        "skipped_already_done": len(set(mine) - set(todo)),
        "re_extracted": re_extracted,
        "failed": len(failed),
        "failures": failed,
        "seconds": round(time.perf_counter() - t0, 2),
        "shard": f"{i}/{n}",
    }
    if n == 1:
        summary |= finalize(spec, device, backbone_name=backbone.name, log=log, text=text)
    return summary


def finalize(spec: ExtractSpec, device, backbone_name: str | None = None, log=None, text=None) -> dict:
    """Assemble the dataset from the per-video work files (also what ``--merge`` runs).

    Only videos in the folder now whose work matches the recorded settings and their file go in.
    The summary lists ``removed`` (in the previous dataset, no longer in the folder) and
    ``not_extracted`` (in the folder, neither a current work file nor an unchanged failure)."""
    with folder_lock(Layout(spec.out, spec.name).base):  # one job assembles a dataset folder
        return _finalize(spec, device, backbone_name, log, text)


def _finalize(spec: ExtractSpec, device, backbone_name: str | None, log, text) -> dict:
    log = log or (lambda msg: None)
    layout = Layout(spec.out, spec.name)
    root = layout.extract_work()
    if backbone_name is None:
        names = sorted(p.name for p in root.iterdir() if (p / "backbone.json").is_file()) if root.is_dir() else []
        if len(names) != 1:
            raise PrvrError(f"{root}: expected the work of one visual feature to merge, found {names or 'none'}")
        backbone_name = names[0]
    work = root / backbone_name
    meta = json.loads((work / "backbone.json").read_text())
    if spec.captions is not None and text is None:
        read_caption_jsonl(spec.captions)
        text = _build_text(spec, device)  # before anything is written: a missing model changes nothing
    key = meta.get("fingerprint")
    videos = list_videos(spec.videos_dir)
    files = []
    for fp in sorted(work.glob("*.npz")):
        if fp.stem in videos and _work_state(fp) == (key, _source(videos[fp.stem])):
            files.append(fp)
    if not files:
        raise PrvrError(f"{work}: no extracted videos of {spec.videos_dir} to assemble (with the current settings)")
    have = {fp.stem for fp in files}
    failures = {}
    for fp in sorted(work.glob("failures*.json")):
        for f in json.loads(fp.read_text()):
            v = f["video"]
            if v in videos and v not in have and f.get("settings") == key and f.get("source") == _source(videos[v]):
                failures[v] = {"video": v, "file": f["file"], "error": f["error"]}
    not_extracted = sorted(set(videos) - have - set(failures))
    if not_extracted:
        log(
            f"left out {len(not_extracted)} video(s) without features for the current settings and file "
            f"(re-run prvr extract, every shard): {_listing(not_extracted)}"
        )
    previous = layout.frame_times(backbone_name)
    removed = sorted(v for v in (json.loads(previous.read_text()) if previous.is_file() else {}) if v not in videos)
    if removed:
        log(f"removed {len(removed)} video(s) no longer in {spec.videos_dir} from the dataset: {_listing(removed)}")
    times = {}
    with BigFileWriter(layout.bigfile_dir(backbone_name), dim=int(np.load(files[0])["feats"].shape[1])) as w:
        for fp in files:
            with np.load(fp) as z:
                w.add(fp.stem, z["feats"])
                times[fp.stem] = [[round(float(a), 4), round(float(b), 4)] for a, b in z["times"]]
    write_text(layout.frame_times(backbone_name), json.dumps(times) + "\n")
    files = {v: videos[v].relative_to(spec.videos_dir).as_posix() for v in sorted(have)}
    write_json(layout.video_files(), {"root": str(Path(spec.videos_dir).resolve()), "files": files})
    info = {
        "visual_feature": backbone_name,
        "visual": meta["visual"],
        "step_seconds": meta["step_seconds"],
        "frames_per_step": meta["frames_per_step"],
        "videos": len(have),
        "failures": sorted(failures.values(), key=lambda f: f["video"]),
        "versions": versions("open_clip", "transformers", "decord", "torchvision"),
    }
    summary = {
        "dataset": str(layout.base),
        "videos_in_dataset": len(have),
        "removed": removed,
        "not_extracted": not_extracted,
    }
    if spec.captions is not None:
        ends = {v: t[-1][1] for v, t in times.items() if t}  # the last frame's end: about the video's length
        text_info = _captions(spec, layout, have, text, log, ends, float(meta.get("step_seconds") or 1.0))
        info |= text_info
        summary |= {"captions": text_info["captions"], "text_feature": text_info["text_feature"]}
    write_json(layout.extract_record(), info)
    return summary


def _captions(
    spec: ExtractSpec, layout: Layout, have: set[str], text, log, ends: dict | None = None, slack: float = 1.0
) -> dict:
    """Caption files, token features (from the loaded ``text`` model) and moments of the extracted
    videos; returns what ``extract.json`` records about them. A moment past its video's length
    (``ends``: the last frame's end, give or take ``slack`` seconds) is left out, said and recorded."""
    raw = read_caption_jsonl(spec.captions)
    kept = [c for c in raw if c.video in have]
    missing = sorted({c.video for c in raw} - have)
    if missing:
        log(f"captions of {len(missing)} video(s) without features were left out: {', '.join(missing[:5])}")
    if not kept:
        raise PrvrError(f"{spec.captions}: none of its videos were extracted")
    split_of: dict[str, str] = {}
    for c in kept:
        split_of.setdefault(c.video, c.split or assign_split(c.video))
    per_split: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    counters: dict[str, int] = {}
    ids, texts, spans, dropped = [], [], {}, []
    for c in sorted(kept, key=lambda c: c.video):
        k = counters.get(c.video, 0)
        counters[c.video] = k + 1
        cap_id = f"{c.video}#enc#{k}"
        per_split[split_of[c.video]].append((cap_id, c.text))
        ids.append(cap_id)
        texts.append(c.text)
        if c.start is not None and c.end is not None:
            end = (ends or {}).get(c.video)
            if end is not None and (c.start >= end or c.end > end + slack):
                log(
                    f"{spec.captions}: the moment {c.start}-{c.end}s of {cap_id} lies beyond the video's "
                    f"{end:.1f}s: the caption is kept without it"
                )
                dropped.append(cap_id)
                continue
            spans[cap_id] = [float(c.start), float(c.end)]
    feats = text.encode(texts)
    for split in SPLITS:
        if per_split[split]:
            write_captions(layout.caption_file(split), per_split[split])
        elif layout.caption_file(split).exists():
            layout.caption_file(split).unlink()
    write_hdf5(layout.query_hdf5(text.name), zip(ids, feats))
    write_json(layout.moments(), spans)
    return {
        "text_feature": text.name,
        "text": text.describe(),
        "captions": len(ids),
        "moments_beyond_video": dropped,
        "splits": {s: len({cid.split("#")[0] for cid, _ in per_split[s]}) for s in SPLITS},
    }
