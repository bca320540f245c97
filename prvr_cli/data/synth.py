"""Synthetic PRVR data with planted structure, written in the MS-SL layout.

The premise of the method is made true by construction:
- a pool of shared *topics* (unit latent vectors); topic popularity is Zipf-like, so topics recur
  across many videos;
- a video is a sequence of 2-4 *events*, each from a distinct topic, each with its own instance
  vector: ``event = a * topic + sqrt(1 - a^2) * instance``; frames of an event are that latent
  plus jitter, so a query matches only part of its video;
- a query describes one event of its video (its latent plus noise), so an unpaired video that
  holds an event of the same topic is genuinely relevant (ambiguous), though less than the pair;
- a share of queries (``generic_share``) is *generic*: it describes only the event's topic, with
  no instance detail ("someone sits on the couch"), so every video that holds the topic matches
  it exactly as well as its own video does, and the one-to-one label is plainly too narrow;
- separate random linear maps take latents to the visual (``D_v``) and text (``D_q``) feature
  spaces, with noise on both; text tokens mix content tokens with shared filler "words";
- each topic is named by one phrase, "colour thing action" (``synth_words``); a query's caption
  is its topic's phrase, and that word map, recorded in ``synth.json``, encodes typed free text.

The ground truth (events, topics, and per query the unpaired videos of its split that are truly
relevant) is stored as ``ground_truth.npz`` beside the data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prvr_cli.atomic import atomic_path, write_json
from prvr_cli.data.bigfile import BigFileWriter
from prvr_cli.data.captions import write_captions
from prvr_cli.data.hdf5 import write_hdf5
from prvr_cli.data.layout import SPLITS, Layout
from prvr_cli.data.synth_words import REPLAY_FIELDS, SynthWords, first_draws, query_tokens, topic_phrases, unit
from prvr_cli.errors import PrvrError, unknown_name
from prvr_cli.lock import folder_lock, is_lock_file


@dataclass
class SynthSpec:
    videos: int = 2000
    topics: int = 120
    events: tuple[int, int] = (2, 4)  # events per video, inclusive range
    queries: tuple[int, int] = (2, 6)  # queries per video, inclusive range
    frames: tuple[int, int] = (16, 160)  # frames per video; > max_ctx_l exercises resampling
    tokens: tuple[int, int] = (6, 36)  # tokens per query; > max_desc_l exercises truncation
    visual_dim: int = 1024
    text_dim: int = 768
    latent_dim: int = 48
    topic_share: float = 0.8  # a: weight of the topic in an event latent
    zipf: float = 0.7  # topic popularity exponent
    frame_jitter: float = 0.35  # latent noise per frame
    query_jitter: float = 0.3  # latent noise per query
    visual_noise: float = 0.5  # feature-space noise (relative norm)
    text_noise: float = 0.5
    filler: float = 0.35  # share of filler tokens in a query
    # share of queries that describe only their event's topic. 0.2: about a fifth of real TVR
    # queries have a near-paraphrase among other videos' queries (benchmarks/query_genericity.py)
    generic_share: float = 0.2
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0


SIZES = {
    "tiny": dict(videos=60, topics=12, visual_dim=64, text_dim=48, frames=(8, 40), tokens=(4, 12)),
    "small": dict(videos=400, topics=40),
    "medium": dict(videos=2000, topics=120),
    "large": dict(videos=20000, topics=600),
}


def spec_for(size: str = "medium", **overrides) -> SynthSpec:
    if size not in SIZES:
        raise PrvrError(unknown_name("synth size", size, SIZES, where="--size"))
    fields = dict(SIZES[size])
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return SynthSpec(**fields)


def _noisy(signal: np.ndarray, rel: float, rng: np.random.Generator) -> np.ndarray:
    """Unit signal rows plus isotropic noise of expected norm ``rel``."""
    d = signal.shape[-1]
    noise = rng.standard_normal(signal.shape, dtype=np.float32) * (rel / np.sqrt(d))
    return (unit(signal) + noise).astype(np.float32)


def _caption(phrase: str, rng: np.random.Generator) -> str:
    """The topic's phrase with an article; the draw is the one the caption has always taken, so
    the feature draws after it keep their bytes."""
    article = "the" if rng.integers(0, 2) == 0 else ("an" if phrase[0] in "aeiou" else "a")
    return f"{article} {phrase}"


def generate(
    root: str | Path,
    name: str = "synth",
    spec: SynthSpec | None = None,
    text_feature: str = "roberta",
    visual_feature: str = "synth",
    overwrite: bool = False,
) -> Layout:
    """Write a complete dataset under ``root/name``; same spec (seed) = same bytes. A folder that
    already holds anything is refused unless ``overwrite`` (it may be a real collection), and so
    is one another job is writing (``prvr_cli.lock``)."""
    layout = Layout(Path(root), name)
    if layout.base.exists() and not layout.base.is_dir():
        raise PrvrError(f"{layout.base}: is a file, not a dataset folder")
    with folder_lock(layout.base):
        return _generate(root, name, spec, text_feature, visual_feature, overwrite)


def _generate(root, name, spec, text_feature, visual_feature, overwrite) -> Layout:
    spec = spec or SynthSpec()
    if spec.videos < 10:
        raise PrvrError("synthetic data needs at least 10 videos")
    if not 0.0 <= spec.generic_share <= 1.0:
        raise PrvrError(f"generic share must lie in [0, 1], got {spec.generic_share}")
    layout = Layout(Path(root), name)
    if layout.base.is_dir() and any(not is_lock_file(p) for p in layout.base.iterdir()) and not overwrite:
        raise PrvrError(f"{layout.base}: a dataset is already here; pass --overwrite to replace its files")
    if layout.base.exists() and not layout.base.is_dir():
        raise PrvrError(f"{layout.base}: is a file, not a dataset folder")
    replay = {f: getattr(spec, f) for f in REPLAY_FIELDS}
    draws = first_draws(**replay)
    rng, topics, w_vis, w_txt, filler_words = draws.rng, draws.topics, draws.w_vis, draws.w_txt, draws.filler_words
    h = spec.latent_dim
    popularity = 1.0 / np.arange(1, spec.topics + 1) ** spec.zipf
    popularity /= popularity.sum()
    phrases = topic_phrases(spec.seed, spec.topics)

    n_train = int(round(spec.videos * spec.split[0]))
    n_val = int(round(spec.videos * spec.split[1]))
    video_split = np.array([0] * n_train + [1] * n_val + [2] * (spec.videos - n_train - n_val), dtype=np.int8)
    video_ids = [f"v{j:06d}" for j in range(spec.videos)]

    ev_video, ev_topic, ev_start, ev_end = [], [], [], []
    q_ids, q_video, q_event, q_topic, q_generic = [], [], [], [], []
    captions: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    query_feats: list[tuple[str, np.ndarray]] = []
    a = spec.topic_share
    b = np.sqrt(1.0 - a * a)

    with BigFileWriter(layout.bigfile_dir(visual_feature), spec.visual_dim) as writer:
        for j, vid in enumerate(video_ids):
            n_ev = int(rng.integers(spec.events[0], spec.events[1] + 1))
            n_fr = int(rng.integers(max(spec.frames[0], 2 * n_ev), spec.frames[1] + 1))
            ev_topics = rng.choice(spec.topics, size=n_ev, replace=False, p=popularity)
            latents = a * topics[ev_topics] + b * unit(rng.standard_normal((n_ev, h)))
            # contiguous segments of at least 2 frames each
            cuts = np.sort(rng.choice(np.arange(1, n_fr // 2), size=n_ev - 1, replace=False)) * 2
            bounds = np.concatenate([[0], cuts, [n_fr]])
            frame_latent = np.empty((n_fr, h), dtype=np.float32)
            first_event = len(ev_video)
            for e in range(n_ev):
                s, t = int(bounds[e]), int(bounds[e + 1])
                frame_latent[s:t] = latents[e] + spec.frame_jitter / np.sqrt(h) * rng.standard_normal((t - s, h))
                ev_video.append(j), ev_topic.append(int(ev_topics[e])), ev_start.append(s), ev_end.append(t)
            writer.add(vid, _noisy(frame_latent @ w_vis, spec.visual_noise, rng))

            n_q = int(rng.integers(spec.queries[0], spec.queries[1] + 1))
            for k in range(n_q):
                e = k % n_ev if k < n_ev else int(rng.integers(0, n_ev))
                # no draw at share 0, so datasets made before the knob keep their bytes
                generic = spec.generic_share > 0 and bool(rng.random() < spec.generic_share)
                described = topics[ev_topics[e]] if generic else latents[e]
                q_lat = described + spec.query_jitter / np.sqrt(h) * rng.standard_normal(h)
                n_tok = int(rng.integers(spec.tokens[0], spec.tokens[1] + 1))
                is_filler = rng.random(n_tok) < spec.filler
                is_filler[0] = False  # at least one content token
                content = q_lat + 0.5 / np.sqrt(h) * rng.standard_normal((n_tok, h))
                fill = filler_words[rng.integers(0, len(filler_words), n_tok)]
                tokens = query_tokens(content, fill, is_filler, w_txt)
                cap_id = f"{vid}#enc#{k}"
                query_feats.append((cap_id, _noisy(tokens, spec.text_noise, rng)))
                captions[SPLITS[video_split[j]]].append((cap_id, _caption(phrases[ev_topics[e]], rng)))
                q_ids.append(cap_id), q_video.append(j), q_event.append(first_event + e)
                q_topic.append(int(ev_topics[e])), q_generic.append(generic)

    for split in SPLITS:
        write_captions(layout.caption_file(split), captions[split])
    write_hdf5(layout.query_hdf5(text_feature), query_feats)
    _write_truth(
        layout,
        spec,
        video_ids,
        video_split,
        (ev_video, ev_topic, ev_start, ev_end),
        (q_ids, q_video, q_event, q_topic, q_generic),
    )
    write_json(
        layout.synth_record(),
        {
            "spec": asdict(spec),
            "visual_feature": visual_feature,
            "text_feature": text_feature,
            "text": SynthWords(**replay).describe(),  # free text: see synth_words
        },
    )
    return layout


def phrase_topics(layout: Layout) -> list[str]:
    """Each topic's phrase in the synthetic dataset at ``layout`` (its spec is in ``synth.json``)."""
    path = layout.synth_record()
    if not path.is_file():
        raise PrvrError(f"{path}: not a synthetic dataset (no synth.json)")
    spec = json.loads(path.read_text())["spec"]
    return topic_phrases(spec["seed"], spec["topics"])


def _write_truth(layout, spec, video_ids, video_split, events, queries) -> None:
    ev_video, ev_topic, ev_start, ev_end = events
    q_ids, q_video, q_event, q_topic, q_generic = queries
    ev_video, ev_topic = np.asarray(ev_video), np.asarray(ev_topic)
    q_video, q_topic = np.asarray(q_video), np.asarray(q_topic)
    # topic -> videos holding it, per split; relevant(q) = those videos minus q's own video
    topic_videos: dict[tuple[int, int], np.ndarray] = {}
    for t in range(spec.topics):
        vids = np.unique(ev_video[ev_topic == t])
        for s in range(3):
            topic_videos[(t, s)] = vids[video_split[vids] == s]
    indptr, indices = [0], []
    for vq, tq in zip(q_video, q_topic):
        rel = topic_videos[(int(tq), int(video_split[vq]))]
        rel = rel[rel != vq]
        indices.append(rel)
        indptr.append(indptr[-1] + len(rel))
    with atomic_path(layout.ground_truth()) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                video_ids=np.asarray(video_ids),
                video_split=video_split,
                event_video=ev_video,
                event_topic=ev_topic,
                event_start=np.asarray(ev_start),
                event_end=np.asarray(ev_end),
                query_ids=np.asarray(q_ids),
                query_video=q_video,
                query_event=np.asarray(q_event),
                query_topic=q_topic,
                query_generic=np.asarray(q_generic, dtype=bool),
                relevant_indptr=np.asarray(indptr, dtype=np.int64),
                relevant_videos=np.concatenate(indices).astype(np.int64) if indices else np.zeros(0, np.int64),
            )
