"""The per-agency connector file: validated at start-up, one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import AGENCIES
from connectors.config import ConnectorConfigError, ConnectorsConfig, load_connectors_file
from connectors.registry import build_connectors, connectors_config
from gateway.settings import REPO_ROOT

LOOPBACK = {a: {"url": f"http://127.0.0.1:{9000 + i}"} for i, a in enumerate(AGENCIES)}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connectors.yaml"
    path.write_text(text)
    return path


def _agencies_yaml(**om: str) -> str:
    lines = ["agencies:"]
    for a in AGENCIES:
        if a == "om" and om:
            lines.append("  om:")
            lines += [f"    {line}" for line in om["body"].splitlines()]
        else:
            lines.append(f"  {a}: {{url: '{LOOPBACK[a]['url']}'}}")
    return "\n".join(lines) + "\n"


def test_a_good_file_gives_typed_endpoints(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    (tmp_path / "secret").write_text("s3cr3t-value")
    om = (
        "url: https://om.example\nmode: both\ntimeout: 2.5\nsignatureKeyId: gw-2026\n"
        "auth: {type: mtls, certFile: c.pem, keyFile: k.pem}"
    )
    config = load_connectors_file(_write(tmp_path, _agencies_yaml(body=om)))
    endpoint = config.agencies["om"]
    assert (endpoint.mode, endpoint.timeout, endpoint.signature_key_id) == ("both", 2.5, "gw-2026")
    assert endpoint.auth is not None and endpoint.auth.type == "mtls"
    assert endpoint.auth.cert_file == tmp_path / "c.pem"  # relative to the file
    assert config.mode_of("politie") == "both"  # the default: pushed, and in the inbox until acked


def test_the_example_file_parses_apart_from_its_missing_certificates() -> None:
    with pytest.raises(ConnectorConfigError) as e:
        load_connectors_file(REPO_ROOT / "deploy" / "connectors.example.yaml")
    assert "file not found" in str(e.value)


@pytest.mark.parametrize(
    ("om", "expected"),
    [
        (
            "url: https://om.example",
            "agencies.om: Value error, auth is required for a URL that is not a loopback",
        ),
        (
            "url: http://om.example\nauth: {type: mtls, certFile: /nope, keyFile: /nope}",
            "agencies.om.auth.mtls.certFile",
        ),
        (
            "url: https://om.example\nmode: sometimes",
            "agencies.om.mode: Input should be 'push', 'pull' or 'both'",
        ),
        ("url: https://om.example\ntimeot: 3", "agencies.om.timeot: Extra inputs are not permitted"),
        (
            "url: https://om.example\nauth: {type: oauth2, tokenUrl: https://idp.example/t, clientId: gw,"
            " clientSecretFile: SECRETFILE, keyFile: SECRETFILE}",
            "give exactly one of keyFile and clientSecretFile",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_field(tmp_path: Path, om: str, expected: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET-VALUE")
    path = _write(tmp_path, _agencies_yaml(body=om.replace("SECRETFILE", str(secret))))
    with pytest.raises(ConnectorConfigError) as e:
        load_connectors_file(path)
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"{path}: ")
    assert expected.removeprefix("agencies.om: Value error, ") in line.replace("Value error, ", "")
    assert "TOPSECRET" not in line


def test_bad_yaml_and_a_missing_agency(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError, match=r"connectors.yaml: not valid YAML at line 3$"):
        load_connectors_file(_write(tmp_path, "agencies:\n  om: [\n"))
    with pytest.raises(ConnectorConfigError, match=r"connectors.yaml: agencies: missing rvdk$"):
        load_connectors_file(
            _write(
                tmp_path,
                "agencies:\n"
                + "".join(f"  {a}: {{url: 'http://127.0.0.1:1'}}\n" for a in AGENCIES if a != "rvdk"),
            )
        )


def test_agency_urls_without_credentials_must_be_loopback() -> None:
    ConnectorsConfig.from_agency_urls({a: v["url"] for a, v in LOOPBACK.items()})
    urls = {a: v["url"] for a, v in LOOPBACK.items()} | {"om": "http://10.1.2.3:9000"}
    with pytest.raises(ConnectorConfigError) as e:
        build_connectors("http", urls)
    assert str(e.value).startswith("GATEWAY_AGENCY_URLS: agencies.om: ")
    assert "loopback" in str(e.value)


def test_file_and_urls_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError, match="not both"):
        connectors_config("http", {"om": "http://127.0.0.1:1"}, tmp_path / "x.yaml")


def test_serve_stops_with_one_line_for_a_bad_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.cli import run

    path = _write(tmp_path, _agencies_yaml(body="url: https://om.example"))
    monkeypatch.setenv("GATEWAY_CONNECTORS", "http")
    monkeypatch.setenv("GATEWAY_CONNECTORS_FILE", str(path))
    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        code = run(["serve", "--data-dir", str(tmp_path / "data"), "--port", "0"])
    assert code == 1
    (line,) = err.getvalue().strip().splitlines()[-1:]
    assert line.startswith("error: ") and f"{path}: agencies.om" in line and "auth is required" in line
