"""Strict input at the edge (DESIGN 7 "Limits and abuse"), over real HTTP.

A body over the limit is a 413 before it is read to the end; a JSON body that is not plain, bounded
JSON (duplicate keys, deep nesting, non-finite or out-of-range numbers, lone surrogates, too many
payload fields) is a 400 naming the field; request bodies are strictly typed; and whatever passes can
be read back: the recipient's inbox shows it intact, and a stored row that cannot be shown does not
break the inbox.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from gateway.app import create_app
from gateway.schemas import JsonDateTime, RequestBody
from gateway.settings import MAX_JSON_DEPTH, MAX_PAYLOAD_FIELDS, Settings
from tests.e2e.conftest import Gateway, start_gateway
from tests.live import serve

LIMIT = 1_048_576
HANG_GUARD = 60.0  # seconds; only so a regression fails instead of hanging, never a speed claim
INVALID_INPUT = "https://veilig-delen.example/problems/invalid-input"
TOO_LARGE = "https://veilig-delen.example/problems/body-too-large"
SHARE_HEAD = '"informationType":"melding","purpose":"veiligheid_herstellen","recipients":["veilig_thuis"]'


@pytest.fixture(scope="module")
def case_id(gateway: Gateway) -> str:
    return gateway.open_case()


def share_raw(gw: Gateway, case_id: str, raw: bytes, sender: str = "politie") -> httpx.Response:
    with gw.agency(sender) as c:
        return c.post(
            f"/v1/cases/{case_id}/shares", content=raw, headers={"content-type": "application/json"}
        )


def share_body(payload_json: str) -> bytes:
    return ("{" + SHARE_HEAD + ',"payload":' + payload_json + "}").encode()


def invalid_field(r: httpx.Response) -> str:
    """The one field a 400 names (and that it is our problem document)."""
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == INVALID_INPUT
    assert body["status"] == 400
    assert len(body["errors"]) == 1, body
    return str(body["errors"][0]["field"])


def raw_exchange(base: str, head: bytes, parts: Iterable[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send a hand-made request over a socket and read the answer (the body may be left unsent)."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=HANG_GUARD) as sock:
        sock.sendall(head)
        for part in parts:
            sock.sendall(part)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunks(total: int, size: int = 65_536) -> Iterator[bytes]:
    """``total`` bytes of a chunked body, without the closing chunk: the client never finishes."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield f"{n:x}\r\n".encode() + b" " * n + b"\r\n"
        sent += n


# -- 413 before the body is read ------------------------------------------------------------------


def assert_too_large(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413, body
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["type"] == TOO_LARGE
    assert problem["status"] == 413
    assert str(LIMIT) in problem["detail"]
    assert headers["api-version"]  # answered inside the conventions: the usual headers are there
    assert headers["connection"] == "close"


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_sent(
    gateway: Gateway, case_id: str
) -> None:
    # 100 MB declared, 1 KiB sent: a server that reads bodies to the end would wait here forever.
    head = request_head(
        "POST",
        f"/v1/cases/{case_id}/shares",
        {
            "Authorization": f"Bearer {gateway.token('politie-system')}",
            "Content-Type": "application/json",
            "Content-Length": str(100 * 1024 * 1024),
        },
    )
    assert_too_large(*raw_exchange(gateway.base, head, [b"{" + b" " * 1023]))


def test_a_chunked_body_is_counted_while_it_streams_and_stopped_at_the_limit(
    gateway: Gateway, case_id: str
) -> None:
    # No Content-Length and no end: only counting the bytes as they come can refuse this one.
    head = request_head(
        "POST",
        f"/v1/cases/{case_id}/shares",
        {
            "Authorization": f"Bearer {gateway.token('politie-system')}",
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
    )
    assert_too_large(*raw_exchange(gateway.base, head, chunks(LIMIT + 1)))


def test_the_token_endpoint_has_the_same_limit(gateway: Gateway) -> None:
    head = request_head(
        "POST",
        "/oauth2/token",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(LIMIT + 1)},
    )
    assert_too_large(*raw_exchange(gateway.base, head, [b"grant_type=client_credentials&x="]))
    head = request_head(
        "POST",
        "/oauth2/token",
        {"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"},
    )
    assert_too_large(*raw_exchange(gateway.base, head, chunks(LIMIT + 1)))


def test_a_body_of_exactly_the_limit_is_accepted(gateway: Gateway) -> None:
    body = json.dumps({"flow": "acuut", "subjects": [{"role": "kind", "bsn": "999990032"}]}).encode()
    padded = body + b" " * (LIMIT - len(body))  # whitespace is valid JSON, so only the size is at stake
    assert len(padded) == LIMIT
    with gateway.agency("politie") as c:
        r = c.post("/v1/cases", content=padded, headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings().max_body_bytes == LIMIT
    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", "4096")
    assert Settings().max_body_bytes == 4096
    monkeypatch.delenv("GATEWAY_MAX_BODY_BYTES")
    runtime, sock = start_gateway(tmp_path, max_body_bytes=4096)
    try:
        with serve(create_app(runtime=runtime), sock=sock) as base:
            small = httpx.post(f"{base}/oauth2/token", content=b"x" * 4096)
            large = httpx.post(f"{base}/oauth2/token", content=b"x" * 4097)
    finally:
        runtime.close()
    assert small.status_code == 400  # not a client assertion, but read and answered by the app
    assert large.status_code == 413
    assert "4096" in large.json()["detail"]


# -- strict JSON ------------------------------------------------------------------------------------


def test_a_duplicate_recipients_key_is_refused_not_last_wins(gateway: Gateway, case_id: str) -> None:
    raw = (
        '{"informationType":"melding","purpose":"veiligheid_herstellen",'
        '"recipients":["veilig_thuis"],"recipients":["veilig_thuis","om"],"payload":{}}'
    )
    r = share_raw(gateway, case_id, raw.encode())
    assert invalid_field(r) == "recipients"
    assert r.json()["errors"][0]["message"] == "duplicate key"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"locatie":"a","locatie":"b"}', "payload.locatie"),
        ('{"betrokkenen":[{"rol":"x"},{"rol":"x","rol":"y"}]}', "payload.betrokkenen[1].rol"),
        ('{"locatie":NaN}', "payload.locatie"),
        ('{"locatie":Infinity}', "payload.locatie"),
        ('{"locatie":[-Infinity]}', "payload.locatie[0]"),
        ('{"locatie":1e400}', "payload.locatie"),
        ('{"locatie":-1e400}', "payload.locatie"),
        ('{"locatie":9007199254740992}', "payload.locatie"),  # 2**53: past what every JSON reader keeps
        ('{"locatie":1e300}', "payload.locatie"),  # a float: JSON Schema cannot tell it from an integer
        ('{"locatie":-9007199254740992}', "payload.locatie"),
        ('{"locatie":18446744073709551616}', "payload.locatie"),  # 2**64
        ('{"locatie":' + "9" * 5000 + "}", "payload.locatie"),  # past Python's own int-parsing limit
        ('{"locatie":"\\ud800"}', "payload.locatie"),
        ('{"locatie":"ok \\udfff"}', "payload.locatie"),
        ('{"\\ud800":"x"}', "payload"),
    ],
)
def test_json_that_is_not_plain_and_exact_is_refused_naming_the_field(
    gateway: Gateway, case_id: str, payload: str, field: str
) -> None:
    assert invalid_field(share_raw(gateway, case_id, share_body(payload))) == field


def test_a_lone_surrogate_in_raw_utf8_bytes_is_refused(gateway: Gateway, case_id: str) -> None:
    # ED A0 80 is a surrogate encoded as if it were a character; Python's decoder would let it pass.
    raw = share_body('{"locatie":"x"}').replace(b'"x"', b'"\xed\xa0\x80"')
    assert b"\xed\xa0\x80" in raw
    assert invalid_field(share_raw(gateway, case_id, raw)) == "body"


def test_a_duplicate_key_in_a_case_body_names_its_place(gateway: Gateway) -> None:
    raw = b'{"flow":"acuut","subjects":[{"role":"kind","bsn":"999990032","bsn":"999990019"}]}'
    with gateway.agency("politie") as c:
        r = c.post("/v1/cases", content=raw, headers={"content-type": "application/json"})
    assert invalid_field(r) == "subjects[0].bsn"


def nested(depth: int) -> Any:
    """A value ``depth`` containers deep (alternating objects and arrays)."""
    value: Any = "bodem"
    for level in range(depth):
        value = {"n": value} if level % 2 else [value]
    return value


def test_nesting_past_the_limit_is_refused(gateway: Gateway, case_id: str) -> None:
    # The body is level 1 and the payload level 2, so a value 31 deep inside it is level 33.
    payload = {"locatie": nested(MAX_JSON_DEPTH - 1)}
    r = share_raw(gateway, case_id, share_body(json.dumps(payload)))
    assert invalid_field(r).startswith("payload.locatie")
    assert f"deeper than {MAX_JSON_DEPTH}" in r.json()["errors"][0]["message"]


def test_very_deep_nesting_is_refused_without_recursing(gateway: Gateway, case_id: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    r = share_raw(gateway, case_id, share_body('{"locatie":' + deep + "}"))
    assert invalid_field(r) == "body"
    assert f"deeper than {MAX_JSON_DEPTH}" in r.json()["errors"][0]["message"]


def test_finding_2_a_deep_payload_is_refused_so_it_never_reaches_an_inbox(
    gateway: Gateway, case_id: str
) -> None:
    # Finding 2: 300 levels were accepted and delivered, and the recipient's inbox then answered 500.
    r = share_raw(gateway, case_id, share_body('{"locatie":' + "[" * 300 + "]" * 300 + "}"))
    assert invalid_field(r).startswith("payload.locatie")
    with gateway.agency("veilig_thuis") as c:
        assert c.get("/v1/inbox").status_code == 200


def test_invalid_json_is_still_a_400(gateway: Gateway, case_id: str) -> None:
    r = share_raw(gateway, case_id, b'{"informationType": ')
    assert invalid_field(r) == "body"
    assert r.json()["errors"][0]["message"] == "the body is not valid JSON"


# -- payload fields ---------------------------------------------------------------------------------


def test_more_than_the_field_limit_in_a_payload_is_refused(gateway: Gateway, case_id: str) -> None:
    top = {f"veld{i}": i for i in range(MAX_PAYLOAD_FIELDS + 1)}
    assert invalid_field(share_raw(gateway, case_id, share_body(json.dumps(top)))) == "payload"
    # Keys at every depth count: one top-level field holding the rest is no way round it.
    inside = {"locatie": {f"veld{i}": i for i in range(MAX_PAYLOAD_FIELDS)}}
    r = share_raw(gateway, case_id, share_body(json.dumps(inside)))
    assert invalid_field(r) == "payload"
    assert str(MAX_PAYLOAD_FIELDS) in r.json()["errors"][0]["message"]


# -- strict types ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "true", "false", 1, 0])
def test_open_is_a_real_boolean(gateway: Gateway, case_id: str, value: Any) -> None:
    with gateway.agency("veilig_thuis") as c:
        r = c.put(f"/v1/cases/{case_id}/tracks/zorg", json={"open": value})
    assert invalid_field(r) == "open"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "case.track", "track": "zorg", "open": "yes"}, "open"),
        (
            {"action": "share", "payloadFields": [f"f{i}" for i in range(MAX_PAYLOAD_FIELDS + 1)]},
            "payloadFields",
        ),
        # The schema lists the steps of the facts; an unknown one is refused even where it is unused.
        ({"action": "share", "recipient": "om", "step": "AAA"}, "step"),
    ],
)
def test_what_if_bodies_are_strict_too(
    gateway: Gateway, case_id: str, body: dict[str, Any], field: str
) -> None:
    with gateway.agency("veilig_thuis") as c:
        r = c.post("/v1/decisions", json={"caseId": case_id, **body})
    assert invalid_field(r) == field


def test_a_time_in_a_strict_body_is_rfc3339_text_only() -> None:
    # FastAPI validates parsed JSON in Python mode, where a strict datetime would refuse every string.
    class Window(RequestBody):
        since: JsonDateTime

    assert Window.model_validate({"since": "2026-12-01T10:00:00Z"}).since.year == 2026
    for wrong in [1764583200, 1764583200.0, True, "gisteren"]:
        with pytest.raises(ValidationError):
            Window.model_validate({"since": wrong})


# -- nothing that passes can make a later read fail -------------------------------------------------


def largest_valid_payload() -> dict[str, Any]:
    """At the depth and field limits, with unicode and the extreme numbers that are still exact."""
    deepest: Any = {"bodem": '🧭 ﷽ e\u0301 \u202eomgekeerd\u202c \u0000 \\ " \u2028'}
    for _ in range(MAX_JSON_DEPTH - 3):  # body, payload and "locatie" make 3; the deepest object 1 more
        deepest = [deepest]
    payload: dict[str, Any] = {
        "locatie": deepest,
        "aard": {
            "grootste": 9007199254740991,
            "kleinste": -9007199254740991,
            "dubbel": 9007199254740991.0,
            "fijnst": 5e-324,
            "negatief": -0.0,
            "tekst": "Ĳsselmeer, Ærø, 東京, עברית, 😀" * 20,
        },
    }
    rest = MAX_PAYLOAD_FIELDS - count_fields(payload) - 1  # the last one is "betrokkenen" itself
    payload["betrokkenen"] = {f"veld{i:03}": i for i in range(rest)}
    return payload


def count_fields(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(count_fields(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_fields(v) for v in value)
    return 0


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def test_the_largest_valid_payload_is_delivered_and_read_back_intact(gateway: Gateway, case_id: str) -> None:
    payload = largest_valid_payload()
    assert count_fields(payload) == MAX_PAYLOAD_FIELDS
    body = {**json.loads("{" + SHARE_HEAD + "}"), "payload": payload}
    assert depth_of(body) == MAX_JSON_DEPTH
    with gateway.agency("politie") as c:
        r = c.post(f"/v1/cases/{case_id}/shares", json=body)
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["allowed"] is True
    assert set(result["fields"]) == set(payload)
    with gateway.agency("veilig_thuis") as c:
        inbox = c.get("/v1/inbox", params={"limit": 1000})
        assert inbox.status_code == 200, inbox.text
        mine = [m for m in inbox.json()["messages"] if m["messageId"] == result["messageId"]]
        assert len(mine) == 1
        assert mine[0]["payload"] == payload
        assert json.dumps(mine[0]["payload"], sort_keys=True) == json.dumps(payload, sort_keys=True)
        assert c.post(f"/v1/inbox/{result['messageId']}/ack").status_code == 204
        after = c.get("/v1/inbox", params={"limit": 1000}).json()["messages"]
    assert result["messageId"] not in {m["messageId"] for m in after}


UNREADABLE_ROWS = {
    "not-finite": '{"locatie": NaN}',  # what an older version that let NaN through would have stored
    "too-deep": '{"locatie": ' + "[" * 300 + "]" * 300 + "}",  # finding 2, stored before this limit
    "not-json": '{"locatie": ',
    "not-an-object": '["locatie"]',
    "surrogate": '{"locatie": "\\ud800"}',
}
SEALED_DAMAGE = ["sealed-flipped", "sealed-truncated", "sealed-of-another-message"]
"""Sealed rows a damaged disk or a copied row could leave: the seal does not open, so fail closed."""


def test_a_stored_row_that_cannot_be_shown_does_not_break_the_inbox(
    gateway: Gateway, case_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = "vertrouwelijk 4711"
    ids = {}
    for name in [*UNREADABLE_ROWS, *SEALED_DAMAGE, "good"]:
        r = share_raw(gateway, case_id, share_body(json.dumps({"aard": f"{secret} {name}"})))
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["allowed"] is True, r.text
        ids[name] = r.json()["results"][0]["messageId"]
    # Written straight into the store, as an older version (or a damaged disk) could have left them.
    db = Path(gateway.runtime.settings.data_dir) / "gateway.db"
    with sqlite3.connect(db) as conn:
        # Clear rows from before sealing (0004), which the inbox still reads until they are sealed.
        for name, text in UNREADABLE_ROWS.items():
            conn.execute(
                "UPDATE messages SET payload = ?, sealed = NULL WHERE message_id = ?", (text, ids[name])
            )
        sealed = dict(conn.execute("SELECT message_id, sealed FROM messages WHERE sealed IS NOT NULL"))
        good = bytes(sealed[ids["good"]])
        damaged = {
            "sealed-flipped": bytes(sealed[ids["sealed-flipped"]][:-1])
            + bytes([sealed[ids["sealed-flipped"]][-1] ^ 1]),
            "sealed-truncated": bytes(sealed[ids["sealed-truncated"]][:8]),
            "sealed-of-another-message": good,  # bound to its own id and recipient: opens only there
        }
        for name, blob in damaged.items():
            conn.execute("UPDATE messages SET sealed = ? WHERE message_id = ?", (blob, ids[name]))
    broken = {ids[name] for name in [*UNREADABLE_ROWS, *SEALED_DAMAGE]}
    with gateway.agency("veilig_thuis") as c:
        r = c.get("/v1/inbox", params={"limit": 1000})
        assert r.status_code == 200, r.text
        inbox = r.json()
        shown = {m["messageId"]: m for m in inbox["messages"]}
        assert shown[ids["good"]]["payload"] == {"aard": f"{secret} good"}
        unreadable = {u["messageId"]: u for u in inbox["unreadable"]}
        assert set(unreadable) == broken
        assert not set(unreadable) & set(shown)
        assert all(u["caseId"] == case_id and u["sender"] == "politie" for u in unreadable.values())
        for message_id in broken:  # so it can be acknowledged, and is gone then
            assert c.post(f"/v1/inbox/{message_id}/ack").status_code == 204, message_id
        after = c.get("/v1/inbox", params={"limit": 1000}).json()
    assert after["unreadable"] == []
    assert ids["good"] in {m["messageId"] for m in after["messages"]}
    logged = "\n".join(rec.getMessage() for rec in caplog.records if rec.name == "gateway.exchanges")
    assert logged.count("cannot be shown") >= len(broken)
    assert secret not in logged and "locatie" not in logged  # by kind only, never content
