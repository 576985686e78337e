"""The connector for a real agency system reached over HTTP.

Wire protocol (the agency side is ``standins.agency``; shapes in ``connectors._wire``):

- ``POST {base}/veilig-delen/deliveries`` with a camelCase delivery -> ``{messageId, accepted, detail}``
- ``POST {base}/veilig-delen/fetch`` with a camelCase fetch request -> ``{found, data}``
- ``GET {base}/veilig-delen/health`` -> 200 when up

Paths are fixed: no identifier, BSN or payload content ever goes into a URL, where proxies and access
logs would keep it. The W3C ``traceparent`` goes along as a header.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from connectors._wire import (
    DELIVERIES_PATH,
    FETCH_PATH,
    HEALTH_PATH,
    FetchResultBody,
    ReceiptBody,
    delivery_json,
    fetch_json,
)
from connectors.base import (
    AGENCIES,
    ConnectorRejected,
    ConnectorTimeout,
    ConnectorUnavailable,
    Delivery,
    DeliveryReceipt,
    FetchRequest,
    FetchResult,
)

# Failures after which the request may not have been processed, or was processed and the answer lost.
# Both are safe to repeat: fetches read only, and deliveries carry a message id the receiver dedupes on.
# Timeouts are not retried: they already cost the full timeout, and the caller is waiting.
_RETRYABLE = (httpx.NetworkError, httpx.RemoteProtocolError)

# 408 and 429 say "not now" rather than "never": they count as unavailable, not as a refusal.
_TRY_LATER = frozenset({408, 429})

# A refusal's detail ends up in gateway errors and logs; cap it and take it only from a problem
# document's own fields, since a raw body could echo payload content back.
_DETAIL_LIMIT = 200

_Answer = TypeVar("_Answer", bound=BaseModel)


class HttpConnector:
    """An agency system reached over HTTP(S) at ``base_url``."""

    def __init__(
        self,
        agency: str,
        base_url: str,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        *,
        attempts: int = 3,
        retry_pause: float = 0.05,
    ) -> None:
        if agency not in AGENCIES:
            raise ValueError(f"unknown agency {agency!r}; expected one of {', '.join(AGENCIES)}")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url for {agency} must be an http(s) URL, got {base_url!r}")
        if url.query or url.fragment:
            raise ValueError(f"base_url for {agency} must not carry a query or fragment")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.agency = agency
        self.base_url = base_url.rstrip("/")
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client()
        self._timeout = timeout
        self._attempts = attempts
        self._retry_pause = retry_pause

    def deliver(self, d: Delivery) -> DeliveryReceipt:
        """POST ``d`` to the agency; retried on connection errors, which the receiver dedupes."""
        body = self._post(DELIVERIES_PATH, delivery_json(d), d.trace_parent)
        receipt = self._parse(ReceiptBody, body)
        if receipt.message_id != d.message_id:
            raise ConnectorUnavailable(
                self.agency, f"answered for message {receipt.message_id}, not {d.message_id}"
            )
        return DeliveryReceipt(receipt.message_id, receipt.accepted, receipt.detail)

    def fetch(self, r: FetchRequest) -> FetchResult:
        """POST ``r`` to the agency and return what it holds."""
        result = self._parse(FetchResultBody, self._post(FETCH_PATH, fetch_json(r), r.trace_parent))
        return FetchResult(result.found, result.data)

    def health(self) -> bool:
        """True when the agency answers its health endpoint with 200 within the timeout."""
        try:
            response = self._client.get(self.base_url + HEALTH_PATH, timeout=self._timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def close(self) -> None:
        """Close the HTTP client, when this connector made it."""
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"HttpConnector({self.agency!r}, {self.base_url!r})"

    def _post(self, path: str, body: dict[str, Any], trace_parent: str) -> Any:
        url = self.base_url + path
        headers = {"traceparent": trace_parent} if trace_parent else {}
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._client.post(url, json=body, headers=headers, timeout=self._timeout)
            except _RETRYABLE as e:
                if attempt == self._attempts:
                    raise ConnectorUnavailable(
                        self.agency, f"{path}: {type(e).__name__} after {attempt} attempts"
                    ) from e
                time.sleep(self._retry_pause * attempt)
                continue
            except httpx.TimeoutException as e:
                raise ConnectorTimeout(self.agency, f"{path}: timed out after {self._timeout}s") from e
            except httpx.HTTPError as e:
                raise ConnectorUnavailable(self.agency, f"{path}: {type(e).__name__}") from e
            return self._answer(path, response)
        raise AssertionError("unreachable: the loop returns or raises")

    def _answer(self, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError as e:
                raise ConnectorUnavailable(self.agency, f"{path}: answered {status} without JSON") from e
        if 400 <= status < 500 and status not in _TRY_LATER:
            raise ConnectorRejected(
                self.agency, f"{path}: {status} {_problem_detail(response)}", status=status
            )
        raise ConnectorUnavailable(self.agency, f"{path}: answered {status}")

    def _parse(self, model: type[_Answer], body: Any) -> _Answer:
        try:
            return model.model_validate(body)
        except ValidationError as e:
            # Not chained: a ValidationError prints the offending input, which here is case data from
            # the agency, and tracebacks end up in logs. The locations are enough.
            where = ", ".join(".".join(map(str, err["loc"])) for err in e.errors())
            raise ConnectorUnavailable(
                self.agency, f"answer is not a valid {model.__name__} ({where})"
            ) from None


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        for key in ("detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:_DETAIL_LIMIT]
    return response.reason_phrase
