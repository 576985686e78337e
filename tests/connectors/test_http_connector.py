"""HttpConnector against the stand-in agency app under a real uvicorn server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors import (
    Connector,
    ConnectorRejected,
    ConnectorUnavailable,
    HttpConnector,
    SimulatedAgencySystem,
)
from tests.connectors.samples import TRACEPARENT, RecordingClient, make_delivery, make_fetch


def test_delivery_arrives_intact(politie: SimulatedAgencySystem, politie_url: str) -> None:
    connector = HttpConnector("politie", politie_url)
    d = make_delivery(payload={"veiligheidsniveau": "acuut onveilig", "nested": {"a": [1, 2, None]}})
    receipt = connector.deliver(d)
    connector.close()
    assert (receipt.message_id, receipt.accepted, receipt.detail) == ("msg-0001", True, "received")
    assert politie.received == [d]


def test_traceparent_is_forwarded_and_urls_carry_no_content(
    politie: SimulatedAgencySystem, politie_url: str, client: RecordingClient
) -> None:
    connector = HttpConnector("politie", politie_url, client=client)
    connector.deliver(make_delivery())
    connector.fetch(make_fetch())
    assert politie.received[0].trace_parent == TRACEPARENT
    assert politie.fetch_requests[0].trace_parent == TRACEPARENT
    assert [(r.method, r.url.path, r.url.query) for r in client.sent] == [
        ("POST", "/veilig-delen/deliveries", b""),
        ("POST", "/veilig-delen/fetch", b""),
    ]
    assert all(r.headers["traceparent"] == TRACEPARENT for r in client.sent)


def test_bodies_are_camel_case(politie_url: str, client: RecordingClient) -> None:
    HttpConnector("politie", politie_url, client=client).deliver(make_delivery())
    body = httpx.Response(200, content=client.sent[0].content).json()
    assert set(body) == {
        "messageId",
        "caseId",
        "sender",
        "recipient",
        "informationType",
        "purpose",
        "legalBasis",
        "payload",
        "usageRestriction",
        "subjects",
    }


def test_missing_traceparent_is_not_sent(
    politie: SimulatedAgencySystem, politie_url: str, client: RecordingClient
) -> None:
    HttpConnector("politie", politie_url, client=client).deliver(make_delivery(trace_parent=""))
    assert "traceparent" not in client.sent[0].headers
    assert politie.received[0].trace_parent == ""


def test_fetch_returns_the_holders_record(politie: SimulatedAgencySystem, politie_url: str) -> None:
    connector = HttpConnector("politie", politie_url)
    result = connector.fetch(make_fetch())
    assert result.found
    assert result.data == politie.fetch(make_fetch()).data
    assert politie.fetch_requests[0].subject_pseudonyms == ["p-1a2b", "p-3c4d", "p-5e6f"]


def test_fetch_of_a_type_not_held_is_not_found(politie_url: str) -> None:
    result = HttpConnector("politie", politie_url).fetch(make_fetch(information_type="justitiele_informatie"))
    assert (result.found, result.data) == (False, {})


class DropsFirstAnswer(httpx.BaseTransport):
    """A fake network fault: the request reaches the real server, but its first answer is lost."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        response = self.inner.handle_request(request)
        if self.calls == 1:
            response.read()
            response.close()
            raise httpx.ReadError("connection reset before the answer arrived", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_retried_delivery_is_kept_once(politie: SimulatedAgencySystem, politie_url: str) -> None:
    transport = DropsFirstAnswer()
    with httpx.Client(transport=transport) as client:
        receipt = HttpConnector("politie", politie_url, client=client).deliver(make_delivery())
    assert transport.calls == 2
    assert receipt.accepted
    assert "duplicate" in receipt.detail
    assert politie.received == [make_delivery()]


def test_5xx_is_unavailable_and_not_retried(
    politie: SimulatedAgencySystem, politie_url: str, client: RecordingClient
) -> None:
    politie.set_down(True)
    connector = HttpConnector("politie", politie_url, client=client)
    with pytest.raises(ConnectorUnavailable, match="answered 503") as e:
        connector.deliver(make_delivery())
    assert e.value.agency == "politie"
    with pytest.raises(ConnectorUnavailable, match="answered 503"):
        connector.fetch(make_fetch())
    assert connector.health() is False
    # The system answered, so the request got there: repeating it at once would only add load.
    assert len(client.sent) == 3
    politie.set_down(False)
    assert connector.health() is True
    assert connector.deliver(make_delivery()).accepted


@pytest.fixture
def closed_port() -> int:
    """A port on loopback that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_port_is_unavailable_after_bounded_retries(
    closed_port: int, client: RecordingClient
) -> None:
    connector = HttpConnector("politie", f"http://127.0.0.1:{closed_port}", client=client, retry_pause=0)
    with pytest.raises(ConnectorUnavailable, match="ConnectError after 3 attempts") as e:
        connector.deliver(make_delivery())
    assert isinstance(e.value.__cause__, httpx.ConnectError)
    assert len(client.sent) == 3
    with pytest.raises(ConnectorUnavailable):
        connector.fetch(make_fetch())
    assert connector.health() is False


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_timeout_is_unavailable(silent_port: int) -> None:
    connector = HttpConnector("politie", f"http://127.0.0.1:{silent_port}", timeout=0.2)
    with pytest.raises(ConnectorUnavailable, match="timed out") as e:
        connector.fetch(make_fetch())
    assert isinstance(e.value.__cause__, httpx.TimeoutException)


def test_misaddressed_delivery_is_rejected(politie: SimulatedAgencySystem, politie_url: str) -> None:
    with pytest.raises(ConnectorRejected, match="addressed to om") as e:
        HttpConnector("politie", politie_url).deliver(make_delivery(recipient="om"))
    assert e.value.status == 422
    assert politie.received == []


def test_reused_message_id_is_rejected(politie_url: str) -> None:
    connector = HttpConnector("politie", politie_url)
    connector.deliver(make_delivery())
    with pytest.raises(ConnectorRejected, match="already used") as e:
        connector.deliver(make_delivery(payload={"veiligheidsniveau": "veilig"}))
    assert e.value.status == 422


def test_invalid_request_is_rejected_without_echoing_content(
    politie: SimulatedAgencySystem, politie_url: str
) -> None:
    bad = make_delivery(case_id="", payload={"notitie": "GEHEIME-INHOUD"})
    with pytest.raises(ConnectorRejected) as e:
        HttpConnector("politie", politie_url).deliver(bad)
    assert e.value.status == 400
    assert "GEHEIME-INHOUD" not in str(e.value)
    assert politie.received == []


def _answering(status: int, **kwargs: Any) -> httpx.Client:
    # Stands in for a misbehaving agency system, which the stand-in app cannot be made to be.
    return httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(status, **kwargs)))


@pytest.mark.parametrize("status", [408, 429, 500, 502, 301])
def test_try_later_and_other_statuses_are_unavailable(status: int) -> None:
    with pytest.raises(ConnectorUnavailable, match=f"answered {status}"):
        HttpConnector("politie", "http://politie.invalid", client=_answering(status)).fetch(make_fetch())


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_4xx_is_rejected_with_the_problem_detail(status: int) -> None:
    client = _answering(status, json={"title": "Refused", "detail": "not allowed here"})
    with pytest.raises(ConnectorRejected, match="not allowed here") as e:
        HttpConnector("politie", "http://politie.invalid", client=client).deliver(make_delivery())
    assert e.value.status == status


def test_4xx_without_problem_document_does_not_echo_the_body() -> None:
    client = _answering(400, text="you sent GEHEIME-INHOUD")
    with pytest.raises(ConnectorRejected) as e:
        HttpConnector("politie", "http://politie.invalid", client=client).deliver(make_delivery())
    assert "GEHEIME-INHOUD" not in str(e.value)
    assert "Bad Request" in str(e.value)


@pytest.mark.parametrize(
    "answer",
    [
        {"text": "not json"},
        {"json": {"found": "perhaps"}},
        {"json": ["found"]},
    ],
)
def test_unusable_answer_is_unavailable(answer: dict[str, object]) -> None:
    client = _answering(200, **answer)
    with pytest.raises(ConnectorUnavailable):
        HttpConnector("politie", "http://politie.invalid", client=client).fetch(make_fetch())


def test_unusable_answer_does_not_leak_into_the_error() -> None:
    client = _answering(200, json={"found": True, "data": "GEHEIME-INHOUD"})
    with pytest.raises(ConnectorUnavailable, match=r"FetchResultBody \(data\)") as e:
        HttpConnector("politie", "http://politie.invalid", client=client).fetch(make_fetch())
    assert "GEHEIME-INHOUD" not in str(e.value)
    assert e.value.__cause__ is None


def test_receipt_for_another_message_is_unavailable() -> None:
    client = _answering(200, json={"messageId": "msg-9999", "accepted": True})
    with pytest.raises(ConnectorUnavailable, match="not msg-0001"):
        HttpConnector("politie", "http://politie.invalid", client=client).deliver(make_delivery())


def test_receipt_not_accepted_is_passed_on() -> None:
    client = _answering(200, json={"messageId": "msg-0001", "accepted": False, "detail": "on hold"})
    receipt = HttpConnector("politie", "http://politie.invalid", client=client).deliver(make_delivery())
    assert (receipt.accepted, receipt.detail) == (False, "on hold")


@pytest.mark.parametrize(
    ("agency", "url", "message"),
    [
        ("gemeente", "http://x.invalid", "unknown agency"),
        ("politie", "ftp://x.invalid", "http"),
        ("politie", "politie:9001", "http"),
        ("politie", "http://x.invalid/?bsn=1", "query"),
    ],
)
def test_bad_configuration_is_refused(agency: str, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpConnector(agency, url)


def test_is_a_connector_and_trims_the_base_url() -> None:
    connector = HttpConnector("om", "https://om.example/api/")
    assert isinstance(connector, Connector)
    assert connector.base_url == "https://om.example/api"
    connector.close()
