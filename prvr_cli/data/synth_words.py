"""The synthetic generator's word-to-feature map: the words that name each topic, and a text
encoder that turns typed words into token features the way the generator makes a generic query.

It is not a language model: a word means nothing beyond the topics whose phrase holds it. The
map is the generator's own first random draws (``first_draws``, which the generator calls too,
so the two cannot drift) and a seeded phrase per topic; ``describe()`` is the small record that
rebuilds it. The generator writes that record into ``synth.json`` and an index copies it, so
free text on a synthetic dataset is answered offline, with or without the dataset.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from prvr_cli.errors import PrvrError

COLOURS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple", "grey", "pink"]
THINGS = ["ball", "car", "dog", "cup", "door", "chair", "phone", "book", "bike", "lamp", "box", "hat"]
ACTIONS = ["moves left", "falls", "spins", "opens", "stops", "appears", "bounces", "shrinks"]
ARTICLES = ("the", "a", "an")  # filler words: known, but name no topic
N_FILLER = 50
BACKBONE = "synth-words"
DESCRIPTION = "the synthetic generator's seeded word-to-feature map, not a language model"
REPLAY_FIELDS = ("seed", "topics", "latent_dim", "visual_dim", "text_dim")  # what first_draws needs


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Draws:
    """The generator's first draws, in its order; ``rng`` goes on where they end."""

    rng: np.random.Generator
    topics: np.ndarray  # (T, h) unit topic latents
    w_vis: np.ndarray  # (h, D_v) latent -> frame features
    w_txt: np.ndarray  # (h, D_q) latent -> token features
    filler_words: np.ndarray  # (N_FILLER, D_q) filler token vectors
    digest: str  # sha256 of the raw draws the text side uses


def first_draws(seed: int, topics: int, latent_dim: int, visual_dim: int, text_dim: int) -> Draws:
    """Replay the first draws of the generator's rng from its spec."""
    rng = np.random.default_rng(seed)
    h = latent_dim
    raw_topics = rng.standard_normal((topics, h))
    raw_vis = rng.standard_normal((h, visual_dim)).astype(np.float32)
    raw_txt = rng.standard_normal((h, text_dim)).astype(np.float32)
    filler_words = rng.standard_normal((N_FILLER, text_dim)).astype(np.float32)
    # hashed before any arithmetic, so a replay elsewhere (other BLAS, other numpy promotion
    # rules) matches exactly unless the random stream itself differs
    digest = hashlib.sha256(b"".join(a.tobytes() for a in (raw_topics, raw_txt, filler_words))).hexdigest()
    return Draws(rng, unit(raw_topics), raw_vis / np.sqrt(h), raw_txt / np.sqrt(h), filler_words, digest)


def topic_phrases(seed: int, topics: int) -> list[str]:
    """Each topic's phrase, "colour thing action", from a seeded assignment of distinct triples
    (10 x 12 x 8 = 960; beyond that phrases repeat, and a phrase names several topics). Drawn
    from its own rng, so the feature draws of the generator's main rng are untouched."""
    n_triples = len(COLOURS) * len(THINGS) * len(ACTIONS)
    order = np.random.default_rng([seed, 1]).permutation(n_triples)
    phrases = []
    for t in range(topics):
        colour, rest = divmod(int(order[t % n_triples]), len(THINGS) * len(ACTIONS))
        thing, action = divmod(rest, len(ACTIONS))
        phrases.append(f"{COLOURS[colour]} {THINGS[thing]} {ACTIONS[action]}")
    return phrases


def query_tokens(latents: np.ndarray, fill: np.ndarray, is_filler: np.ndarray, w_txt: np.ndarray) -> np.ndarray:
    """Token features before the text noise: a content token is its latent through the text map
    at norm sqrt(D_q), a filler token its filler vector. latents (n, h), fill (n, D_q), is_filler
    (n,) -> (n, D_q)."""
    return np.where(is_filler[:, None], fill, unit(latents @ w_txt) * np.sqrt(w_txt.shape[1]))


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped."""
    return re.findall(r"[^\W_]+", text.lower())


class SynthWords:
    """Typed words -> token features (n_words, D_q) float32, as the generator makes a generic
    query, without its noise: the typed words select the topics whose phrase holds the most of
    them (all of them, if any topic's does); every content word becomes the token of the mean of
    those topics' latents, every article a filler token. Deterministic, no model, no download.

    ``checksum`` (from a record) refuses a replay that differs from the map that made the data.
    """

    name = BACKBONE

    def __init__(
        self, seed: int, topics: int, latent_dim: int, visual_dim: int, text_dim: int, checksum: str | None = None
    ):
        draws = first_draws(seed, topics, latent_dim, visual_dim, text_dim)
        self.spec = dict(zip(REPLAY_FIELDS, (seed, topics, latent_dim, visual_dim, text_dim)))
        self.phrases = topic_phrases(seed, topics)
        self.checksum = hashlib.sha256((draws.digest + "\n" + "\n".join(self.phrases)).encode()).hexdigest()
        if checksum is not None and checksum != self.checksum:
            raise PrvrError(
                f"the synthetic word map (seed {seed}, {topics} topics) replays differently here than when its "
                "dataset was made (another numpy random stream?), so its words would not match the data's features"
            )
        self.topics, self.w_txt, self.filler_words = draws.topics, draws.w_txt, draws.filler_words
        self.dim = int(text_dim)
        self.phrase_words = [set(p.split()) for p in self.phrases]
        self.vocabulary = sorted(set().union(*self.phrase_words))

    @classmethod
    def from_record(cls, rec: dict, device="cpu", advice: str | None = None) -> SynthWords:
        """Rebuild from ``describe()``'s record; ``device`` and ``advice`` are unused (no model)."""
        try:
            fields = {f: int(rec["spec"][f]) for f in REPLAY_FIELDS}
            checksum = rec["checksum"]
        except (KeyError, TypeError, ValueError):
            raise PrvrError(
                f"text encoder record {BACKBONE!r} is incomplete (needs spec {', '.join(REPLAY_FIELDS)} and checksum)"
            ) from None
        return cls(**fields, checksum=checksum)

    def known(self) -> str:
        """The one-line vocabulary an error about typed words ends with."""
        listed = ", ".join(self.vocabulary)
        return f"this synthetic dataset's word map (not a language model) knows: {listed} (and the, a, an)"

    def select(self, text: str) -> np.ndarray:
        """Topic indices (k,) that the words of ``text`` name; a ``PrvrError`` for unknown words."""
        typed = words(text)
        unknown = [w for w in dict.fromkeys(typed) if w not in ARTICLES and w not in self.vocabulary]
        if unknown:
            listed = ", ".join(repr(w) for w in unknown)
            raise PrvrError(f"unknown word{'s' if len(unknown) > 1 else ''} {listed}: {self.known()}")
        content = set(typed) - set(ARTICLES)
        if not content:
            raise PrvrError(f"{text.strip()!r} names no topic: {self.known()}")
        held = np.array([len(content & p) for p in self.phrase_words])
        return np.flatnonzero(held == held.max())

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for text in texts:
            latent = unit(self.topics[self.select(text)].mean(0))
            typed = words(text)
            is_filler = np.array([w in ARTICLES for w in typed])
            fill = np.stack([self.filler_words[ARTICLES.index(w) if w in ARTICLES else 0] for w in typed])
            tokens = query_tokens(np.repeat(latent[None], len(typed), 0), fill, is_filler, self.w_txt)
            out.append(unit(tokens).astype(np.float32))  # the unit rows the generator adds noise to
        return out

    def describe(self) -> dict:
        return {
            "backbone": BACKBONE,
            "description": DESCRIPTION,
            "dim": self.dim,
            "tokens": "one per word: an article a filler vector, any other word the mean latent of the topics "
            "whose phrase holds the most typed words, through the generator's text map; no noise",
            "spec": self.spec,
            "checksum": self.checksum,
        }


def synth_text_record(synth_json: dict) -> dict | None:
    """The word map's record from a ``synth.json``; one written before it carried the record
    gets it from its spec (the generator's first draws have not changed since)."""
    if "text" in synth_json:
        return synth_json["text"]
    spec = synth_json.get("spec") or {}
    if not all(f in spec for f in REPLAY_FIELDS):
        return None
    return SynthWords(**{f: int(spec[f]) for f in REPLAY_FIELDS}).describe()
