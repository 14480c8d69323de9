"""Request and response bodies of the HTTP API (pydantic models; they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from hstu_blair.serving.http.limits import printable


def _valid_unicode(text: str) -> str:
    """Reject lone surrogates (JSON allows ``"\\udc00"``): they cannot be written back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (it holds a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
Time = StrictInt | StrictStr
"""A timestamp as sent: integer seconds or an ISO 8601 string (checked by
:func:`hstu_blair.serving.ids.check_time`); booleans, floats and numbers in strings are refused."""


Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
"""An attribute value: a string, a number or a bool (never coerced)."""


class RangeBody(BaseModel):
    """``min <= value <= max`` (inclusive; either bound may be left out)."""

    model_config = ConfigDict(extra="forbid")
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None


class FilterBody(BaseModel):
    """Which items may be recommended (see :mod:`hstu_blair.serving.item_filter`)."""

    model_config = ConfigDict(extra="forbid")
    allow: list[StrictStr | StrictInt] | None = Field(None, description="only these item ids")
    exclude: list[StrictStr | StrictInt] | None = Field(None, description="never these item ids")
    where: dict[str, Scalar | list[Scalar] | RangeBody] | None = Field(
        None, description="per attribute: a value (equals), a list (any of) or {min, max} (numbers)"
    )

    def as_json(self) -> dict[str, Any]:
        """The filter's JSON form (``ItemFilter.parse`` takes it)."""
        out = self.model_dump(exclude_none=True, exclude={"where"})
        if self.where is not None:
            out["where"] = {
                n: v.model_dump(exclude_none=True) if isinstance(v, RangeBody) else v
                for n, v in self.where.items()
            }
        return out


class AttributesUpdate(BaseModel):
    """``PATCH /items/{item_id}``: attribute values merged into the item's (null removes one)."""

    model_config = ConfigDict(extra="forbid")
    attributes: dict[str, Scalar | None]


class RecommendRequest(BaseModel):
    """One query: ``history`` (item ids, oldest first) or ``user_id``; numbers are taken as ids."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    history: list[Text] | None = Field(None, description="item ids, oldest first")
    user_id: Text | None = Field(None, description="a user of the training data (their full history)")
    k: int = Field(10, ge=1, description="number of items (at most max_k)")
    exclude_seen: bool = Field(True, description="never recommend an item of the history")
    timestamps: list[Time] | None = Field(
        None, description="integer seconds or ISO 8601 strings, one per history item"
    )
    query_time: Time | None = Field(
        None, description="integer seconds or an ISO 8601 string (default: the last history timestamp)"
    )
    skip_unknown: bool = Field(False, description="leave unknown ids out instead of answering 422")
    filter: FilterBody | None = Field(None, description="only items this filter allows")
    explain: bool = Field(
        False,
        description="give each item the history items that contributed most (reasons; one more model call)",
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[RecommendRequest]


class ReasonItem(BaseModel):
    """A history item behind a recommendation: ``weight`` = score with the whole history minus
    score without this item."""

    item_id: str
    title: str
    weight: float


class Item(BaseModel):
    item_id: str
    score: float
    title: str
    reasons: list[ReasonItem] | None = Field(
        None, description="history items that contributed most, best first (only when explain was asked)"
    )


class RecommendResponse(BaseModel):
    items: list[Item]
    skipped: list[str] = Field(description="unknown history ids left out (skip_unknown)")
    version: int = Field(0, description="the model version that answered (see hstu-blair update)")


class BatchResponse(BaseModel):
    results: list[RecommendResponse]


FieldValue = Text | int | float | bool | list[Text] | None
"""One field of an item added by fields (lists are joined with ", ", as ``prepare`` does)."""


class NewItem(BaseModel):
    """An item to add, by ``text`` or by ``fields`` (exactly one): fields are the catalogue's
    columns (``{"name": ..., "description": ..., "category": ...}``), composed into the text as
    ``prepare`` composed the catalogue's, the title from its title column (``title`` wins). ``item_id``
    must be in canonical form (see ``serving.ids.check_new_id``): no surrounding whitespace, no
    control characters."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    item_id: Text = Field(min_length=1, max_length=256)
    text: Text | None = Field(None, min_length=1, max_length=100_000)
    fields: dict[Text, FieldValue] | None = Field(None, max_length=100)
    title: Text = Field("", max_length=1000)

    @model_validator(mode="after")
    def _text_or_fields(self) -> NewItem:
        if (self.text is None) == (self.fields is None):
            raise ValueError("give exactly one of text or fields")
        return self


async def validation_error_response(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without echoing the input: the echo can be huge, or a NaN/inf float that JSON
    cannot encode (which turned a bad request into a 500)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [printable(x) if isinstance(x, str) else x for x in e.get("loc", ())],
            "msg": printable(str(e.get("msg", ""))),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)
