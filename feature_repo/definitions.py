"""Entities, Parquet sources, feature views and feature services of the kuberec repo.

Definitions are built from the job's data directory (where ingest wrote the
sources) and from the user attribute columns ingest found, because product
teams bring their own user attributes. Join keys are strings, so integer and
text ids share one schema; ``kuberec.components.features`` converts ids at the
boundary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Float32, Float64, Int64, PrimitiveFeastType, String

EMBEDDING_DIM = 384
SCHEMA_FILE = "schema.json"
#: Push sources of the views that feedback moves (``FeatureStore.push`` writes whole rows).
PUSH_SOURCES = {"user_profile": "user_profile_push", "item_profile": "item_profile_push"}
SOURCE_FILES = {
    "user_profile": "user_profile.parquet",
    "item_profile": "item_profile.parquet",
    "item_text_embedding": "item_text_embedding.parquet",
}
_ATTRIBUTE_TYPES: dict[str, PrimitiveFeastType] = {
    "int": Int64,
    "float": Float64,
    "str": String,
}


@dataclass(frozen=True)
class Definitions:
    entities: list[Entity]
    views: list[FeatureView]
    services: list[FeatureService]

    def objects(self) -> list[object]:
        """Everything ``FeatureStore.apply`` takes, in dependency order."""
        return [*self.entities, *self.views, *self.services]


def build(
    sources_dir: Path, user_attributes: dict[str, str], *, text_embeddings: bool = True
) -> Definitions:
    """The repo for sources under ``sources_dir``; ``user_attributes``: column -> int|float|str."""
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)

    def source(view: str) -> FileSource:
        return FileSource(
            name=f"{view}_source",
            path=str(sources_dir / SOURCE_FILES[view]),
            timestamp_field="event_timestamp",
        )

    def pushed(view: str) -> PushSource:
        """Materialized from the file, and pushed to by the serving's feedback path."""
        return PushSource(name=PUSH_SOURCES[view], batch_source=source(view))

    unknown = sorted(set(user_attributes.values()) - set(_ATTRIBUTE_TYPES))
    if unknown:
        raise ValueError(f"user attribute kinds {unknown}; use one of {sorted(_ATTRIBUTE_TYPES)}")
    user_profile = FeatureView(
        name="user_profile",
        entities=[user],
        ttl=timedelta(0),
        schema=[
            Field(name="interaction_count", dtype=Int64),
            Field(name="mean_rating", dtype=Float32),
            Field(name="recent_items", dtype=Array(String)),
            *(Field(name=n, dtype=_ATTRIBUTE_TYPES[k]) for n, k in user_attributes.items()),
        ],
        source=pushed("user_profile"),
        description="Interaction history summary as of each event, plus user attributes.",
    )
    item_profile = FeatureView(
        name="item_profile",
        entities=[item],
        ttl=timedelta(0),
        schema=[
            Field(name="popularity", dtype=Int64),
            Field(name="popularity_recent", dtype=Int64),
            Field(name="mean_rating", dtype=Float32),
            Field(name="genres", dtype=Array(String)),
            Field(name="year", dtype=Int64),
            Field(name="title", dtype=String),
        ],
        source=pushed("item_profile"),
        description="Popularity (overall and trailing window), mean rating, categories, year.",
    )
    item_text = FeatureView(
        name="item_text_embedding",
        entities=[item],
        ttl=timedelta(0),
        schema=[Field(name="embedding", dtype=Array(Float32))],
        source=source("item_text_embedding"),
        description=f"{EMBEDDING_DIM}-d all-MiniLM-L6-v2 embedding of title, categories and text.",
    )
    training = FeatureService(
        name="training",
        features=[user_profile, item_profile],
        description="Point-in-time features joined to every labelled interaction.",
    )
    views = [user_profile, item_profile, *([item_text] if text_embeddings else [])]
    serving = FeatureService(
        name="serving",
        features=views,
        description="What the online service looks up per request and per item.",
    )
    return Definitions([user, item], views, [training, serving])


def load(sources_dir: Path) -> Definitions:
    """The repo for sources ingest already wrote (it records the user attribute kinds)."""
    schema = json.loads((sources_dir / SCHEMA_FILE).read_text())
    return build(sources_dir, schema["user_attributes"], text_embeddings=schema["text_embeddings"])
