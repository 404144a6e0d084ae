"""A Python callable (`package.module:function`) for apps that wrap their own router.

The function receives one dict (model, messages, params, case, sample) and returns either the
answer text or a dict with `text` and optionally `input_tokens`, `output_tokens`, `finish_reason`.
Plain functions run in a worker thread; `async def` functions run on the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from evalgate.engine.providers.base import ProviderError, Reply, as_count


def import_callable(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{spec} is not callable")
    return target


class CallableProvider:
    def __init__(self, target: Callable[..., Any], model: str, params: dict[str, Any]) -> None:
        self.target = target
        self.model = model
        self.params = params
        self.is_async = inspect.iscoroutinefunction(target)

    async def invoke(self, call: Any) -> Reply:
        request = {"model": self.model, "messages": call.messages, "params": dict(self.params),
                   "case": call.entry.case.model_dump(mode="json"), "sample": call.sample}
        try:
            if self.is_async:
                result = await self.target(request)
            else:
                result = await asyncio.to_thread(self.target, request)
        except Exception as exc:  # the user's code: record its failure, never crash the run
            raise ProviderError("callable_error", f"{type(exc).__name__}: {exc}",
                                retryable=False) from None
        return self.to_reply(result)

    @staticmethod
    def to_reply(result: Any) -> Reply:
        if isinstance(result, str):
            return Reply(result)
        if isinstance(result, dict) and isinstance(result.get("text"), str):
            return Reply(result["text"], as_count(result.get("input_tokens")),
                         as_count(result.get("output_tokens")), result.get("finish_reason"))
        raise ProviderError("malformed_response", "callable must return a str or a dict with "
                            f"'text', got {type(result).__name__}", retryable=False)
