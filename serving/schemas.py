"""The JSON contract of the service: request and response bodies as pydantic models.

Ids are kept as the data gave them (ints or strings), so every id field accepts
both; ``"1"`` and ``1`` are matched to the model's ids by :class:`~.engine.Engine`.
Unknown keys are refused, so a misspelt field (``exclude_sen``) fails loudly
with a 422 instead of being silently ignored; counts and flags are strict
(``"k": true`` is not 1).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from kuberec.api.spec import RankingSpec

Id = StrictInt | Annotated[StrictStr, Field(min_length=1, max_length=256)]
MAX_K = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(_Body):
    """Restrictions on what may be recommended."""

    genres: list[str] | None = Field(None, description="only items with one of these genres")


class RecommendRequest(_Body):
    user_id: Id
    k: StrictInt = Field(10, ge=1, le=MAX_K)  # `true` is no count
    exclude_seen: StrictBool = True
    filters: Filters | None = None
    recent_items: list[Id] | None = Field(
        None, max_length=1000, description="items taken since training, oldest first"
    )
    ranking: RankingSpec | None = Field(
        None, description="re-ranking for this request: the fields given replace the job's "
        "(spec.serving.ranking); excluded items add to the job's",
    )  # fmt: skip


class RecommendedItem(BaseModel):
    item_id: int | str
    score: float
    explanation: str


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    model_version: str
    request_id: str
    fallback: bool


class SimilarRequest(_Body):
    item_id: Id
    k: StrictInt = Field(10, ge=1, le=MAX_K)


class SimilarItem(BaseModel):
    item_id: int | str
    score: float


class SimilarResponse(BaseModel):
    items: list[SimilarItem]
    model_version: str
    request_id: str


class ScoreRequest(_Body):
    user_id: Id
    item_ids: list[Id] = Field(..., min_length=1, max_length=10_000)


class ItemScore(BaseModel):
    item_id: int | str
    score: float


class ScoreResponse(BaseModel):
    scores: list[ItemScore]
    unknown_items: list[int | str]
    model_version: str
    request_id: str
    fallback: bool


Event = Literal["impression", "click", "purchase"]


class FeedbackRequest(_Body):
    request_id: str = Field(..., min_length=1, max_length=128)
    user_id: Id
    item_id: Id
    event: Event


class FeedbackResponse(BaseModel):
    accepted: bool
    model_version: str
