"""The five CLIP-InterpreT analyses (report section 4), as dot products over cached decompositions.

1. property_nn   mean of the property's heads' token-summed parts, raw dot with the pool's, top 4
2. topic_map     per-patch <c[l, h, n], t> for one head, one layer, all layers or the last four
3. contrastive   aggregate maps of two texts differenced, shown as +d / -d on one symmetric scale
4. image_nn      per-head token-summed part of the image vs the pool's, raw dot, top 8
5. text_nn       per-head pool parts vs a unit text embedding (the head's direct share of the cosine), top 3

Fixes of the original app (section 4.6): the contrastive map really is the aggregate; high always means a high
match (no uint8 wrap); the symmetric scale is max |d| of the one difference map; the model is loaded once and the
image's forward pass is cached, so changing head, layer or text is a lookup.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from splice_desktop.core.errors import SpliceError
from splice_desktop.core.interpret.heads import HeadDecomposer, HeadDecomposition

Head = tuple[int, int]

DEFAULT_K_PROPERTY = 4
DEFAULT_K_IMAGE = 8
DEFAULT_K_TEXT = 3

AGG_ALL = "all"  # every layer, every head (the original "Aggregate")
AGG_LAST4 = "last4"  # the last four layers only (direct effects concentrate there)


class AnalysisError(SpliceError):
    """An analysis cannot run with the current inputs (no pool, head not indexed, wrong model, ...)."""


class HeadPool(Protocol):
    """What the NN analyses need from an image pool (``PoolIndex`` implements it)."""

    layers: tuple[int, ...]

    def __len__(self) -> int: ...

    def head_matrix(self, layer: int, head: int) -> np.ndarray: ...

    @property
    def paths(self) -> list[Path]: ...


# ---- results -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Neighbours:
    """Top-k pool images; ``searched`` says how many pool images were compared (results reflect only those)."""

    indices: np.ndarray  # (k,) int64 into the pool, best first
    scores: np.ndarray  # (k,) float32
    paths: tuple[Path, ...]
    searched: int
    description: str

    def rows(self) -> list[tuple[int, str, float]]:
        return [(r + 1, str(p), float(s)) for r, (p, s) in enumerate(zip(self.paths, self.scores))]


@dataclass(frozen=True)
class TopicMap:
    """Per-patch scores on the patch grid (rows, cols); larger = stronger match with the text."""

    values: np.ndarray  # (gh, gw) float32
    text: str
    description: str

    @property
    def vmin(self) -> float:
        return float(self.values.min())

    @property
    def vmax(self) -> float:
        return float(self.values.max())


@dataclass(frozen=True)
class ContrastiveMaps:
    """d = s(text1) - s(text2) per patch; ``first`` = d, ``second`` = -d, both on [-limit, +limit]."""

    first: np.ndarray
    second: np.ndarray
    limit: float
    texts: tuple[str, str]
    description: str


# ---- helpers -------------------------------------------------------------------------------------------------
def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first; ties broken by lower index (stable, deterministic)."""
    scores = np.asarray(scores)
    n = scores.shape[0]
    k = int(max(0, min(k, n)))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(n)
    order = np.lexsort((part, -scores[part]))
    return part[order].astype(np.int64)


def upsample(values: np.ndarray, size: tuple[int, int], smooth: bool = False) -> np.ndarray:
    """Patch grid -> (h, w) pixels. Default nearest (each patch a flat block, no blur); ``smooth`` = bilinear."""
    gh, gw = values.shape
    h, w = size
    if not smooth:
        rows = np.minimum((np.arange(h) * gh) // h, gh - 1)
        cols = np.minimum((np.arange(w) * gw) // w, gw - 1)
        return values[rows][:, cols].astype(np.float32)
    y = (np.arange(h) + 0.5) * gh / h - 0.5
    x = (np.arange(w) + 0.5) * gw / w - 0.5
    y0 = np.clip(np.floor(y).astype(int), 0, gh - 1)
    x0 = np.clip(np.floor(x).astype(int), 0, gw - 1)
    y1 = np.clip(y0 + 1, 0, gh - 1)
    x1 = np.clip(x0 + 1, 0, gw - 1)
    wy = np.clip(y - y0, 0, 1)[:, None]
    wx = np.clip(x - x0, 0, 1)[None, :]
    v = values.astype(np.float32)
    top = v[y0][:, x0] * (1 - wx) + v[y0][:, x1] * wx
    bot = v[y1][:, x0] * (1 - wx) + v[y1][:, x1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)


def _unit(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(t))
    return t / n if n > 0 else t


def aggregate_layers(dec: HeadDecomposition, mode: str) -> list[int]:
    if mode == AGG_ALL:
        layers = list(range(dec.num_layers))
    elif mode == AGG_LAST4:
        layers = list(range(max(0, dec.num_layers - 4), dec.num_layers))
    else:
        raise ValueError(f"unknown aggregate mode {mode!r}")
    missing = [l for l in layers if l not in dec.layers]
    if missing:
        raise AnalysisError(f"Layers {missing} were not decomposed for this image; decompose all layers.")
    return layers


# ---- the five analyses on arrays -----------------------------------------------------------------------------
def topic_map(
    dec: HeadDecomposition,
    text_embedding: np.ndarray,
    layer: Optional[int] = None,
    head: Optional[int] = None,
    aggregate: Optional[str] = None,
    text: str = "",
    index: int = 0,
) -> TopicMap:
    """Per-patch direct contributions to cos(image, text): one head, one layer (head=None), or an aggregate."""
    t = _unit(text_embedding)
    if aggregate is not None:
        layers = aggregate_layers(dec, aggregate)
        heads = None
        desc = "all layers, all heads" if aggregate == AGG_ALL else f"last 4 layers ({layers[0]}-{layers[-1]}), all heads"
    else:
        if layer is None:
            raise AnalysisError("Choose a layer (or an aggregate).")
        layers = [layer % dec.num_layers]
        heads = None if head is None else [head]
        desc = f"L{layers[0]}" + ("" if head is None else f".H{head}") + (", all heads" if head is None else "")
    return TopicMap(values=dec.patch_map(t, layers, heads, index=index), text=text, description=desc)


def contrastive_maps(
    dec: HeadDecomposition,
    first: np.ndarray,
    second: np.ndarray,
    aggregate: str = AGG_ALL,
    texts: tuple[str, str] = ("", ""),
    index: int = 0,
) -> ContrastiveMaps:
    """Aggregate maps of two texts differenced; one symmetric scale +-max|d| for both displays."""
    layers = aggregate_layers(dec, aggregate)
    d = dec.patch_map(_unit(first), layers, None, index) - dec.patch_map(_unit(second), layers, None, index)
    limit = float(np.max(np.abs(d))) if d.size else 0.0
    desc = "all layers, all heads" if aggregate == AGG_ALL else "last 4 layers, all heads"
    return ContrastiveMaps(first=d.astype(np.float32), second=(-d).astype(np.float32), limit=limit, texts=texts,
                           description=desc)


def _check_head(pool: HeadPool, layer: int, head: int) -> None:
    if layer not in pool.layers:
        raise AnalysisError(
            f"Layer {layer} is not in the image pool index (indexed layers: {list(pool.layers)}). "
            "Pick one of those layers or rebuild the index with this layer."
        )
    if len(pool) == 0:
        raise AnalysisError("The image pool is empty: choose a folder of images and build the index first.")
    del head


def _neighbours(pool: HeadPool, scores: np.ndarray, k: int, description: str) -> Neighbours:
    idx = top_k(scores, k)
    paths = pool.paths
    return Neighbours(indices=idx, scores=scores[idx].astype(np.float32), paths=tuple(paths[i] for i in idx),
                      searched=int(scores.shape[0]), description=description)


def image_nn(pool: HeadPool, query: np.ndarray, layer: int, head: int, k: int = DEFAULT_K_IMAGE) -> Neighbours:
    """Pool images whose (layer, head) part is most similar (raw dot) to ``query`` = the image's part."""
    _check_head(pool, layer, head)
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    scores = pool.head_matrix(layer, head) @ q
    return _neighbours(pool, scores, k, f"image neighbours on L{layer}.H{head}")


def text_nn(pool: HeadPool, text_embedding: np.ndarray, layer: int, head: int, k: int = DEFAULT_K_TEXT) -> Neighbours:
    """Pool images whose (layer, head) part contributes most to their cosine with the text."""
    _check_head(pool, layer, head)
    scores = pool.head_matrix(layer, head) @ _unit(text_embedding)
    return _neighbours(pool, scores, k, f"text neighbours on L{layer}.H{head}")


def property_vector(parts: dict[Head, np.ndarray] | Any, heads: Sequence[Head]) -> np.ndarray:
    """g_P = mean over the property's heads of the token-summed parts."""
    return np.mean(np.stack([np.asarray(parts[h], dtype=np.float32) for h in heads]), axis=0).astype(np.float32)


def property_nn(
    pool: HeadPool,
    query_parts: dict[Head, np.ndarray],
    heads: Sequence[Head],
    k: int = DEFAULT_K_PROPERTY,
    name: str = "custom",
) -> Neighbours:
    """Raw dot of g_P(image) with g_P(pool image) for every pool image (no normalisation, as published)."""
    heads = list(dict.fromkeys((int(l), int(h)) for l, h in heads))
    if not heads:
        raise AnalysisError("The property has no heads: tick at least one head.")
    for l, h in heads:
        _check_head(pool, l, h)
    g = property_vector(query_parts, heads)
    # <G_P(J), g> with G_P the mean of the heads' parts = mean of per-head dot products (no K x E sum matrix)
    scores = sum(pool.head_matrix(l, h) @ g for l, h in heads) / np.float32(len(heads))
    scores = np.asarray(scores, dtype=np.float32)
    return _neighbours(pool, scores, k, f"property '{name}' ({len(heads)} heads)")


# ---- an interactive session: one forward per image, texts cached ----------------------------------------------
class InterpretSession:
    """Holds the model's decomposer, the current image's decomposition and encoded texts.

    Only ``set_image`` runs the vision tower; every analysis afterwards is numpy on cached tensors.
    """

    def __init__(self, loaded: Any, text_cache_size: int = 256) -> None:
        self.loaded = loaded
        self.decomposer = HeadDecomposer(loaded)  # all layers: the aggregate maps need them
        self.image_path: Optional[Path] = None
        self.decomposition: Optional[HeadDecomposition] = None
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()
        self._text_cache_size = text_cache_size
        self.forward_count = 0

    @property
    def num_layers(self) -> int:
        return self.decomposer.num_layers

    @property
    def num_heads(self) -> int:
        return self.decomposer.num_heads

    def image_tensor(self, path: str | Path) -> Any:
        """The model input for one file, preprocessed exactly as SpLiCE encoding and the pool index do."""
        from splice_desktop.core.embeddings import ImagePreprocessor
        from splice_desktop.core.images import load_image

        img = load_image(path, target_size=self.loaded.image_size)
        return ImagePreprocessor(self.loaded.preprocess).tensor(img).unsqueeze(0)

    def set_image(self, path: Optional[str | Path]) -> Optional[HeadDecomposition]:
        """Decompose a new image (one forward); the same path again is answered from the cache."""
        if path is None:
            self.image_path, self.decomposition = None, None
            return None
        p = Path(path)
        if self.decomposition is not None and self.image_path == p:
            return self.decomposition
        self.image_path, self.decomposition = None, None  # a failure below must not leave the old image answering
        dec = self.decomposer.run(self.image_tensor(p))
        self.forward_count += 1
        self.image_path, self.decomposition = p, dec
        return dec

    def set_tensor(self, tensor: Any, label: str = "<tensor>") -> HeadDecomposition:
        self.decomposition = self.decomposer.run(tensor)
        self.forward_count += 1
        self.image_path = Path(label)
        return self.decomposition

    def text(self, text: str) -> np.ndarray:
        """Unit text embedding (no prompt template, as the original), cached per string."""
        text = text.strip()
        if not text:
            raise AnalysisError("Type a text first.")
        if text in self._texts:
            self._texts.move_to_end(text)
            return self._texts[text]
        from splice_desktop.core.text_encoder import encode_texts

        emb = encode_texts(self.loaded, [text])[0]
        self._texts[text] = emb
        while len(self._texts) > self._text_cache_size:
            self._texts.popitem(last=False)
        return emb

    def _dec(self) -> HeadDecomposition:
        if self.decomposition is None:
            raise AnalysisError("Select an image first.")
        return self.decomposition

    def head_part(self, layer: int, head: int) -> np.ndarray:
        return self._dec().head_sums([layer])[0, 0, head]

    def topic(self, text: str, layer: Optional[int] = None, head: Optional[int] = None,
              aggregate: Optional[str] = None) -> TopicMap:
        return topic_map(self._dec(), self.text(text), layer, head, aggregate, text=text)

    def contrastive(self, first: str, second: str, aggregate: str = AGG_ALL) -> ContrastiveMaps:
        return contrastive_maps(self._dec(), self.text(first), self.text(second), aggregate, (first, second))

    def image_nn(self, pool: HeadPool, layer: int, head: int, k: int = DEFAULT_K_IMAGE) -> Neighbours:
        self._check_pool(pool)
        return image_nn(pool, self.head_part(layer, head), layer, head, k)

    def text_nn(self, pool: HeadPool, text: str, layer: int, head: int, k: int = DEFAULT_K_TEXT) -> Neighbours:
        self._check_pool(pool)
        return text_nn(pool, self.text(text), layer, head, k)

    def property_nn(self, pool: HeadPool, heads: Sequence[Head], k: int = DEFAULT_K_PROPERTY,
                    name: str = "custom") -> Neighbours:
        self._check_pool(pool)
        dec = self._dec()
        parts = {(l, h): dec.head_sums([l])[0, 0, h] for l, h in heads}
        return property_nn(pool, parts, heads, k, name)

    def _check_pool(self, pool: HeadPool) -> None:
        key = getattr(pool, "model_key", None)
        if key is not None and key != self.loaded.key:
            raise AnalysisError(
                "The image pool was indexed with another model; rebuild the index for the current model."
            )
