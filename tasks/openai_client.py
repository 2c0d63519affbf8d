"""The OpenAI API, or any server that speaks it, as transcriber=openai and enrich=openai both use it: the key, the
client, and podflow's retry policy. Each request takes a slot of the shared rate limit; the key appears in no
message."""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar, cast

import openai

from tasks.errors import OUT_OF_QUOTA_CODE, PodflowError, RequestFailed
from tasks.http import MAX_RETRY_AFTER_S, failure_detail
from tasks.http import retry_after_s as http_retry_after_s
from tasks.models import OpenAISettings
from tasks.redaction import MASK, redact_urls
from tasks.retrying import GaveUp, log_retry, retrying

T = TypeVar("T")

RETRIED_STATUSES = (408, 409, 429)  # and every 5xx
NOT_SENT = "not sent: another request to the API failed"
IDENTIFIER = re.compile(r"[a-z0-9_.-]{1,64}")  # an error body's type or code worth naming: never free text


class _TryAgain(Exception):
    """A try that failed in a way another may not: `retry_after_s` is the server's Retry-After, if it gave one."""

    def __init__(self, detail: str, retry_after_s: float | None = None):
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def api_key(api: OpenAISettings, error: type[PodflowError]) -> str | None:
    """The key from the Prefect Secret block `openai_api_key_secret` names, else OPENAI_API_KEY; None if neither
    (a self-hosted server at `openai_base_url` may need none)."""
    if name := api.openai_api_key_secret:
        from prefect.blocks.system import Secret

        try:
            return str(cast(Secret, Secret.load(name)).get())  # loaded synchronously: no flow here is async
        except Exception as exc:  # Prefect's messages name the block, never its value; an sk-… is masked anyway
            raise error(
                f"the Prefect Secret block {name!r} (openai_api_key_secret) cannot be loaded: "
                f"{type(exc).__name__}: {masked(str(exc), None)}"
            ) from None
    return os.environ.get("OPENAI_API_KEY") or None


def masked(text: str, key: str | None) -> str:
    """`text` with the key, anything shaped like an OpenAI key (servers echo keys they refuse) and the credentials
    in any URL masked."""
    if key:
        text = text.replace(key, MASK)
    return redact_urls(re.sub(r"\bsk-[\w*.-]{3,}", f"sk-{MASK}", text))


def new_client(api: OpenAISettings, key: str | None, timeout: openai.Timeout) -> openai.OpenAI:
    """A client of `openai_base_url` (else api.openai.com) that never retries: call_with_retries does."""
    # A self-hosted server may want no key; the client wants one anyway.
    return openai.OpenAI(api_key=key or "none", base_url=api.openai_base_url or None, max_retries=0, timeout=timeout)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """OpenAI's retry-after-ms, else Retry-After, capped at MAX_RETRY_AFTER_S; None when neither is given."""
    try:
        return min(max(float(headers.get("retry-after-ms")) / 1000, 0.0), MAX_RETRY_AFTER_S)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return http_retry_after_s(headers)


def _status_detail(exc: openai.APIStatusError, key: str | None) -> str:
    """`HTTP 429, type insufficient_quota, code insufficient_quota`: the status and the identifiers of an
    OpenAI-shaped error body. Never its message or any other text: the body is a stranger's bytes."""
    named = [
        f"{field} {value}"
        for field, value in (("type", exc.type), ("code", exc.code))
        if isinstance(value, str) and IDENTIFIER.fullmatch(value)
    ]
    return masked(", ".join([f"HTTP {exc.status_code}", *named]), key)  # a server may give the key as a code


def _take_rate_limit_slot(api: OpenAISettings, error: type[PodflowError]) -> None:
    """Wait for a slot of the global concurrency limit `openai_rate_limit` names, if it names one, at most
    `openai_rate_limit_wait_s`."""
    if not (name := api.openai_rate_limit):
        return
    from prefect.concurrency.sync import rate_limit

    try:
        rate_limit(name, timeout_seconds=api.openai_rate_limit_wait_s, strict=True)
    except TimeoutError:
        raise error(
            f"no slot of the rate limit {name!r} (openai_rate_limit) within {api.openai_rate_limit_wait_s:.0f} s "
            "(openai_rate_limit_wait_s)"
        ) from None
    except Exception as exc:
        raise error(
            f"the rate limit {name!r} (openai_rate_limit) cannot be taken: {exc}; create it as a global "
            "concurrency limit with slot decay"
        ) from None


def call_with_retries(
    send: Callable[[], T],
    api: OpenAISettings,
    error: type[PodflowError],
    stopped: threading.Event,
    *,
    key: str | None,
    timeout_s: float,
    on_retry: Callable[[str], None] = log_retry,
) -> T:
    """What `send()` returns, each try taking a rate-limit slot; 408, 409, 429, 5xx, timeouts (`timeout_s`, for the
    message) and lost connections are tried again, up to `openai_attempts` times.

    Between tries the wait is the backoff or the server's Retry-After, whichever is longer; `on_retry` hears of it,
    and `stopped` (set when a sibling request has failed) cuts it short. A 429 for insufficient_quota is a refusal.
    Raises RequestFailed when the API refuses or the tries run out, `error` when `stopped` is set (before a try or
    while it waited for its slot) or the rate limit cannot be taken.
    """
    numbers = itertools.count(1)

    def attempt() -> T:
        number = next(numbers)
        if stopped.is_set():
            raise error(NOT_SENT)
        _take_rate_limit_slot(api, error)
        if stopped.is_set():  # a sibling failed while this one waited for its slot
            raise error(NOT_SENT)
        try:
            return send()
        except openai.APIStatusError as exc:
            detail = _status_detail(exc, key)
            if (exc.status_code not in RETRIED_STATUSES and exc.status_code < 500) or exc.code == OUT_OF_QUOTA_CODE:
                raise RequestFailed(detail, number, exc.status_code, refused=True, code=exc.code) from None
            raise _TryAgain(detail, retry_after_s(exc.response.headers)) from None
        except openai.APITimeoutError:
            raise _TryAgain(f"no answer within {timeout_s:.0f} s") from None
        except openai.APIConnectionError as exc:
            # The library's own words ("Connection error.") say less than the chain of errors under them.
            raise _TryAgain(masked(failure_detail(exc.__cause__ or exc), key)) from None
        except openai.APIResponseValidationError:  # an answer not in the API's shape: a proxy's, say
            raise _TryAgain("an answer not in the API's shape") from None

    try:
        return retrying(
            attempt,
            attempts=api.openai_attempts,
            backoff_base_s=api.openai_retry_backoff_s,
            retry_on=_TryAgain,
            on_retry=on_retry,
            sleep=stopped.wait,
        )
    except GaveUp as gave_up:
        raise RequestFailed(str(gave_up.last), gave_up.attempts) from None
