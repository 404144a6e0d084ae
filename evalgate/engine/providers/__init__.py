"""Providers map a planned call to an HTTP request and an HTTP response to a Reply."""

from __future__ import annotations

from typing import Any

from evalgate.engine.providers.anthropic import AnthropicProvider
from evalgate.engine.providers.base import HttpProvider, ProviderError, Reply
from evalgate.engine.providers.generic_http import GenericHttpProvider
from evalgate.engine.providers.openai import OpenAIProvider
from evalgate.engine.providers.pycallable import CallableProvider, import_callable
from evalgate.errors import ConfigError, Problem
from evalgate.spec.config import DEFAULT_BASE_URLS, LoadedModel

__all__ = ["CallableProvider", "HttpProvider", "ProviderError", "Reply", "make_provider"]


def make_provider(model: LoadedModel, sim_base_url: str | None = None) -> Any:
    """Build the provider for a model config; `stream: true` wraps it to read streams."""
    provider = _provider(model, sim_base_url)
    cfg = model.config
    if not cfg.stream:
        return provider
    from evalgate.engine.providers.streaming import streaming

    return streaming(provider, cfg.provider, cfg.stream_idle_timeout_s,
                     cfg.http.stream if cfg.http is not None else None)


def _provider(model: LoadedModel, sim_base_url: str | None) -> Any:
    """Build the provider for a model config. The API key is read from the environment here."""
    cfg = model.config
    if cfg.provider == "sim":
        if sim_base_url is None:
            raise ConfigError(Problem(str(model.path), "provider 'sim' needs the session's "
                                      "simulator (internal error: none started)"))
        return OpenAIProvider(sim_base_url.rstrip("/") + "/v1", cfg.model or model.name,
                              cfg.params, cfg.headers, None, case_headers=True)
    api_key = model.api_key()
    if cfg.provider == "openai":
        return OpenAIProvider(cfg.base_url or DEFAULT_BASE_URLS["openai"], cfg.model, cfg.params,
                              cfg.headers, api_key)
    if cfg.provider == "anthropic":
        return AnthropicProvider(cfg.base_url or DEFAULT_BASE_URLS["anthropic"], cfg.model,
                                 cfg.params, cfg.headers, api_key)
    if cfg.provider == "http":
        assert cfg.http is not None
        return GenericHttpProvider(cfg.http, cfg.model, cfg.params, cfg.headers, api_key)
    assert cfg.callable is not None
    try:
        target = import_callable(cfg.callable)
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigError(Problem(str(model.path), f"cannot import {cfg.callable!r}: {exc}",
                                  None, "callable")) from None
    return CallableProvider(target, cfg.model or model.name, cfg.params)
