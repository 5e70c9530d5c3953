"""The text-embedding cache: vectors are kept as they are made, so an interrupted embedding of
a large catalogue resumes where it stopped instead of starting again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kuberec.components.features import embeddings

TEXTS = [f"A quiet story of rivers, number {i}" for i in range(10)]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBEREC_CACHE_DIR", str(tmp_path / "datasets"))
    monkeypatch.setattr(embeddings, "CHUNK_TEXTS", 4)
    return tmp_path


class _Interrupted(RuntimeError):
    pass


def _count_encodes(monkeypatch: pytest.MonkeyPatch, fail_on: int | None = None) -> list[int]:
    """The real model's encode, counting texts per call; raises on call ``fail_on``."""
    model = embeddings._model()
    real = model.encode
    calls: list[int] = []

    def encode(texts: list[str], **kwargs: object) -> np.ndarray:
        calls.append(len(texts))
        if len(calls) == fail_on:
            raise _Interrupted("stopped")
        return real(texts, **kwargs)

    monkeypatch.setattr(model, "encode", encode)
    return calls


def test_an_interrupted_embedding_keeps_its_finished_chunks(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_encodes(monkeypatch, fail_on=2)
    with pytest.raises(_Interrupted):
        embeddings.embed_texts(TEXTS)
    assert calls == [4, 4]
    monkeypatch.undo()
    monkeypatch.setenv("KUBEREC_CACHE_DIR", str(cache / "datasets"))
    monkeypatch.setattr(embeddings, "CHUNK_TEXTS", 4)
    calls = _count_encodes(monkeypatch)
    vectors = embeddings.embed_texts(TEXTS)
    assert calls == [4, 2]  # the first chunk of 4 came from the cache
    assert vectors.shape == (10, embeddings.EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_cached_catalogue_embeds_nothing_and_gives_the_same_vectors(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = embeddings.embed_texts(TEXTS)
    calls = _count_encodes(monkeypatch)
    again = embeddings.embed_texts(list(reversed(TEXTS)))
    assert calls == [] and np.array_equal(again, first[::-1])
