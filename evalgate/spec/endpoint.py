"""How a model config reaches its endpoint and what a call costs: prices, client-side rate
limits and the generic HTTP endpoint's request and reply shape (with its streaming form)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Unknown keys are errors in every file evalgate reads (a typo never silently does
    nothing)."""

    model_config = ConfigDict(extra="forbid")


class Pricing(Strict):
    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    # Prompt-cache prices; unset: the input price (what the provider bills without a cache).
    cached_input_per_mtok: float | None = Field(None, ge=0)
    cache_write_per_mtok: float | None = Field(None, ge=0)
    # A gateway's price for each call in a response header (x-litellm-response-cost): when
    # set it is trusted, and the price table is cross-checked against it.
    from_header: str | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached: int = 0,
             cache_write: int = 0) -> float:
        """The price of one call; `input_tokens` includes the cached and cache-write ones."""
        fresh = max(0, input_tokens - cached - cache_write)
        cached_rate = self.input_per_mtok if self.cached_input_per_mtok is None \
            else self.cached_input_per_mtok
        write_rate = self.input_per_mtok if self.cache_write_per_mtok is None \
            else self.cache_write_per_mtok
        return (fresh * self.input_per_mtok + cached * cached_rate + cache_write * write_rate
                + output_tokens * self.output_per_mtok) / 1e6

    @property
    def has_table(self) -> bool:
        return bool(self.input_per_mtok or self.output_per_mtok)


class RateLimit(Strict):
    """Client-side pacing: requests and (estimated, then actual) tokens per minute."""

    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_limit(self) -> RateLimit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("give 'rpm', 'tpm' or both")
        return self


class HttpStream(Strict):
    """A streaming in-house endpoint: SSE events or NDJSON lines, each a JSON object with the
    answer's next piece at `text_path`; `done_path` (when given) marks the last chunk, so a
    stream that ends without it is cut off. SSE's `data: [DONE]` always ends the stream."""

    format: Literal["sse", "ndjson"] = "sse"
    text_path: str = "text"
    done_path: str | None = None
    input_tokens_path: str | None = None
    output_tokens_path: str | None = None


class HttpSpec(Strict):
    """A generic in-house endpoint: a jinja2 request body template and paths into the reply."""

    url: str
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = '{"prompt": {{ prompt | tojson }}}'
    text_path: str = "text"
    input_tokens_path: str | None = None
    output_tokens_path: str | None = None
    # `stream: true` on the model config: how the endpoint streams (None: SSE, `text` per chunk)
    stream: HttpStream | None = None
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
