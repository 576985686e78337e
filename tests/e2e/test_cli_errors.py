"""The command line never shows a traceback: every expected failure is one line on stderr and a non-zero exit.

Each case runs the real ``gateway`` command in a subprocess against real files, real settings and real
closed or busy ports, and checks that the one line names what is wrong (the file, the setting, the URL).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.auth import generate_keypair
from tests.e2e.conftest import Gateway

GATEWAY = [sys.executable, "-m", "gateway.cli"]
# A generous hang guard only: every case here fails within a second or two on an idle machine.
HANG_GUARD = 120


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``gateway ARGS`` with the test's environment plus ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full.update(env or {})
    return subprocess.run(
        [*GATEWAY, *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        input=stdin,
        timeout=HANG_GUARD,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *names: str, code: int | None = None) -> str:
    """Non-zero exit, exactly one line on stderr, no traceback, and the line names each of ``names``."""
    lines = result.stderr.splitlines()
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    line = lines[0]
    for name in names:
        assert name in line, line
    if code is not None:
        assert result.returncode == code, line
    return line


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port with nothing listening on it (bound, never listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@dataclass
class Files:
    """Good and bad files for the cases, in one temporary directory."""

    root: Path
    private_key: Path = field(init=False)
    public_key: Path = field(init=False)

    def __post_init__(self) -> None:
        private_pem, public_pem = generate_keypair("Ed25519")
        self.private_key = self.root / "agency.key.pem"
        self.private_key.write_bytes(private_pem)
        self.public_key = self.root / "agency.pub.pem"
        self.public_key.write_bytes(public_pem)
        (self.root / "not-a-key.pem").write_text(
            "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n"
        )
        (self.root / "garbage.txt").write_text("this is not a key, a checkpoint or JSON\n")
        (self.root / "not-json.json").write_text("{not json")
        (self.root / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
        (self.root / "a-number.json").write_text("42")
        (self.root / "a-file").write_text("a file where a directory should be")
        (self.root / "token.txt").write_text("not-a-real-token\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("cli-errors"))


@pytest.fixture(scope="module")
def export(files: Files) -> Iterator[tuple[Path, str]]:
    """An export with its checkpoint, and the verifier key, made by the CLI itself.

    The log holds the entries two subject-access lookups appended: each lookup is logged.
    """
    data_dir = files.root / "exported"
    env = {"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_PSEUDONYM_SECRET": "s" * 40}
    made = cli("clients", "list", env=env)
    assert made.returncode == 0, made.stderr
    for _ in range(2):
        looked_up = cli("audit", "subject-report", "--bsn", "-", env=env, stdin="999990019\n")
        assert looked_up.returncode == 0, looked_up.stderr
    out = files.root / "log.ndjson"
    done = cli("audit", "export", str(out), env=env)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1].removeprefix("verifier key: ")
    yield out, key


# -- the gateway is not there ----------------------------------------------------------------------------


def test_token_against_a_closed_port_names_the_url_and_suggests_serve(files: Files, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = cli("token", "--client-id", "x", "--key", str(files.private_key), "--url", url)
    assert_one_line(result, url, "gateway serve", code=1)


@pytest.mark.parametrize(
    "env_for",
    [
        pytest.param(lambda port: {"GATEWAY_PORT": str(port)}, id="GATEWAY_PORT"),
        pytest.param(lambda port: {"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port)}, id="HOST+PORT"),
        pytest.param(
            lambda port: {"GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}/"}, id="GATEWAY_PUBLIC_URL"
        ),
    ],
)
def test_token_without_url_goes_where_serve_would_listen(
    files: Files, closed_port: int, env_for: object, tmp_path: Path
) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data"), **env_for(closed_port)}  # type: ignore[operator]
    result = cli("token", "--client-id", "x", "--key", str(files.private_key), env=env)
    assert_one_line(result, f"http://127.0.0.1:{closed_port}", "gateway serve", code=1)


def test_token_finds_the_url_a_running_serve_recorded_in_its_data_directory(
    files: Files, tmp_path: Path
) -> None:
    """``gateway serve --port N`` on the command line: ``gateway token`` on the same data dir asks port N."""
    data_dir = tmp_path / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {"GATEWAY_DATA_DIR": str(data_dir)}
    full = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | env
    server = subprocess.Popen(
        [*GATEWAY, "serve", "--port", str(port)],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()  # printed once the socket is bound and the app is built
        assert f"http://127.0.0.1:{port}" in banner, banner + (server.stderr.read() if server.poll() else "")
        # A registered client's token, asked for with no --url at all.
        registered = cli(
            "clients", "register", "--client-id", "cli-test", "--agency", "om",
            "--role", "agency_system", "--public-key", str(files.public_key), env=env,
        )  # fmt: skip
        assert registered.returncode == 0, registered.stderr
        got = cli("token", "--client-id", "cli-test", "--key", str(files.private_key), env=env)
        assert got.returncode == 0, got.stderr
        assert got.stdout.count(".") == 2  # a JWS compact access token
    finally:
        server.terminate()
        server.wait(timeout=HANG_GUARD)
    assert not (data_dir / "gateway.url").exists()  # a stopped gateway leaves no URL pointing at nothing


def test_token_against_something_that_is_not_a_gateway_names_the_url(files: Files) -> None:
    """A listener that hangs up on every request, as a wrong port or a crashing proxy would."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def hang_up() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = listener.accept()
                    conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        result = cli("token", "--client-id", "x", "--key", str(files.private_key), "--url", url)
    assert_one_line(result, url, code=1)


def test_token_refused_by_the_gateway_is_one_line(gateway: Gateway, files: Files) -> None:
    """A running gateway that does not know the client: its OAuth error, in one line, exit 1."""
    result = cli("token", "--client-id", "nobody", "--key", str(files.private_key), "--url", gateway.base)
    assert_one_line(result, "invalid_client", code=1)


def test_witness_against_a_closed_port_names_the_url(
    files: Files, closed_port: int, export: tuple[Path, str]
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = cli(
        "audit", "witness", "--url", url, "--token-file", str(files.root / "token.txt"),
        "--state", str(files.root / "witness.json"), "--key", export[1],
    )  # fmt: skip
    assert_one_line(result, url)


# -- bad settings ----------------------------------------------------------------------------------------

SETTINGS_CASES = [
    ({"GATEWAY_PORT": "abc"}, "GATEWAY_PORT"),
    ({"GATEWAY_MODE": "production"}, "GATEWAY_PSEUDONYM_SECRET"),
    ({"GATEWAY_POLICY_ENGINE": "foo"}, "GATEWAY_POLICY_ENGINE"),
    ({"GATEWAY_AGENCY_URLS": "not json"}, "GATEWAY_AGENCY_URLS"),
    ({"GATEWAY_DATABASE_URL": "foo://nowhere"}, "GATEWAY_DATABASE_URL"),
]
# One command per way settings are read: serve's (with options on top), the registry's, the audit log's.
COMMANDS_READING_SETTINGS = [("serve",), ("clients", "list"), ("audit", "checkpoint")]


@pytest.mark.parametrize(("env", "named"), SETTINGS_CASES, ids=[n for _, n in SETTINGS_CASES])
@pytest.mark.parametrize("command", COMMANDS_READING_SETTINGS, ids=" ".join)
def test_bad_settings_are_one_line_naming_the_setting(
    env: dict[str, str], named: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    result = cli(*command, env={"GATEWAY_DATA_DIR": str(tmp_path / "data"), **env})
    assert_one_line(result, named)


def test_bad_settings_for_token_name_the_setting(files: Files) -> None:
    result = cli("token", "--client-id", "x", "--key", str(files.private_key), env={"GATEWAY_PORT": "abc"})
    assert_one_line(result, "GATEWAY_PORT")


def test_a_settings_error_never_repeats_the_value(tmp_path: Path) -> None:
    """A too-short secret is still a secret: the line names the setting, not what it was set to."""
    secret = "short-but-secret-value"
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_MODE": "production",
        "GATEWAY_PSEUDONYM_SECRET": secret,
        "GATEWAY_DATABASE_URL": "postgresql+psycopg://u:hunter2-password@127.0.0.1:1/x",
    }
    line = assert_one_line(cli("clients", "list", env=env), "GATEWAY_PSEUDONYM_SECRET")
    assert secret not in line
    assert "hunter2" not in line


@pytest.mark.parametrize("inside", [False, True], ids=["unset", "inside-the-data-directory"])
def test_production_keeps_the_sealing_key_apart_from_the_data(inside: bool, tmp_path: Path) -> None:
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_MODE": "production",
        "GATEWAY_PSEUDONYM_SECRET": "x" * 40,
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_PUBLIC_URL": "https://gateway.example",
    }
    if inside:
        env["GATEWAY_SEALING_KEY_FILE"] = str(tmp_path / "data" / "keys" / "sealing.key")
    assert_one_line(cli("clients", "list", env=env), "GATEWAY_SEALING_KEY_FILE")
    env["GATEWAY_SEALING_KEY_FILE"] = str(tmp_path / "keys" / "sealing.key")  # apart: accepted
    assert cli("clients", "list", env=env).returncode == 0


def test_http_connectors_without_urls_name_the_setting(tmp_path: Path) -> None:
    # Port 0: any free port, since the failure comes after the bind and before anything is served.
    env = {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_PORT": "0", "GATEWAY_CONNECTORS": "http"}
    assert_one_line(cli("serve", env=env), "GATEWAY_AGENCY_URLS")


def test_a_missing_policy_directory_is_named(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_PORT": "0", "GATEWAY_POLICY_DIR": "/nope"}
    assert_one_line(cli("serve", env=env), "/nope")


def test_an_unreachable_database_is_one_line(closed_port: int) -> None:
    url = f"postgresql+psycopg://gateway:hunter2@127.0.0.1:{closed_port}/gateway"
    line = assert_one_line(cli("clients", "list", env={"GATEWAY_DATABASE_URL": url}), str(closed_port))
    assert "hunter2" not in line


@pytest.mark.parametrize(
    "command",
    [("serve",), ("clients", "list"), ("audit", "verify"), ("audit", "export", "out.ndjson"), ("demo",)],
    ids=" ".join,
)
@pytest.mark.parametrize("where", ["a-file", "a-file/below"], ids=["is-a-file", "under-a-file"])
def test_a_data_directory_that_cannot_be_one_is_named(
    files: Files, command: tuple[str, ...], where: str
) -> None:
    """As root no directory is unwritable, so a path through a regular file stands in for one."""
    result = cli(*command, "--data-dir", str(files.root / where), env={"GATEWAY_PORT": "0"}, cwd=files.root)
    assert_one_line(result, str(files.root / "a-file"))


@pytest.mark.parametrize("command", [("clients", "list"), ("audit", "verify")], ids=" ".join)
def test_a_database_file_that_is_not_one_is_one_line(command: tuple[str, ...], tmp_path: Path) -> None:
    (tmp_path / "gateway.db").write_bytes(b"not SQLite at all " * 300)
    assert_one_line(cli(*command, "--data-dir", str(tmp_path)), "not a database", "GATEWAY_DATABASE_URL")


@pytest.mark.parametrize(
    "command",
    [("serve",), ("sim-agency", "--agency", "om", "--gateway-url", "http://127.0.0.1:1")],
    ids=["serve", "sim-agency"],
)
def test_a_port_in_use_names_the_address(command: tuple[str, ...], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = [*command, "--port", str(port)]
        if command[0] == "sim-agency":
            args += ["--data-dir", str(tmp_path)]
        result = cli(*args, env={"GATEWAY_DATA_DIR": str(tmp_path)})
    assert_one_line(result, f"127.0.0.1:{port}", "in use", code=1)


def test_serve_on_an_impossible_port_names_it(tmp_path: Path) -> None:
    result = cli("serve", env={"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_PORT": "99999"})
    assert_one_line(result, "99999")


# -- missing and malformed files -------------------------------------------------------------------------


def _file_cases() -> list[object]:
    def p(id_: str, *args: str, named: str, code: int | None = None) -> object:
        return pytest.param(args, named, code, id=id_)

    return [
        p("token --key missing", "token", "--client-id", "x", "--key", "nope.pem", "--url",
          "http://127.0.0.1:1", named="nope.pem"),
        p("token --key not a key", "token", "--client-id", "x", "--key", "not-a-key.pem", "--url",
          "http://127.0.0.1:1", named="not-a-key.pem"),
        p("token --key a public key", "token", "--client-id", "x", "--key", "agency.pub.pem", "--url",
          "http://127.0.0.1:1", named="agency.pub.pem"),
        p("token --key a directory", "token", "--client-id", "x", "--key", ".", "--url",
          "http://127.0.0.1:1", named="--key"),
        p("register --public-key missing", "clients", "register", "--client-id", "a", "--agency", "om",
          "--role", "agency_system", "--public-key", "nope.pem", named="nope.pem", code=2),
        p("register --public-key garbage", "clients", "register", "--client-id", "a", "--agency", "om",
          "--role", "agency_system", "--public-key", "garbage.txt", named="publicKey", code=2),
        p("register unknown agency", "clients", "register", "--client-id", "a", "--agency", "interpol",
          "--role", "agency_system", "--public-key", "agency.pub.pem", named="agency", code=2),
        p("register unknown role", "clients", "register", "--client-id", "a", "--agency", "om",
          "--role", "king", "--public-key", "agency.pub.pem", named="role", code=2),
        p("revoke unknown client", "clients", "revoke", "--client-id", "nobody", named="nobody", code=2),
        p("keygen over an existing key", "clients", "keygen", "agency", named="agency.key.pem"),
        p("keygen into a missing directory", "clients", "keygen", "nodir/agency",
          named="nodir/agency.key.pem"),
        p("verify-export missing file", "audit", "verify-export", "nope.ndjson", "--key", "k",
          "--checkpoint", "garbage.txt", named="nope.ndjson"),
        p("verify-export missing checkpoint", "audit", "verify-export", "nope.ndjson", "--key", "k",
          named="nope.ndjson.checkpoint", code=2),
        p("verify-export a directory", "audit", "verify-export", ".", "--key", "k",
          "--checkpoint", "garbage.txt", named="."),
        p("verify --checkpoint missing", "audit", "verify", "--checkpoint", "nope.cp", named="nope.cp"),
        p("verify --checkpoint not JSON", "audit", "verify", "--checkpoint", "not-json.json",
          named="not-json.json", code=2),
        p("verify --key garbage", "audit", "verify", "--key", "garbage", named="key"),
        p("export into a missing directory", "audit", "export", "nodir/out.ndjson", named="nodir/out.ndjson"),
        p("witness token file missing", "audit", "witness", "--url", "http://127.0.0.1:1",
          "--token-file", "nope.txt", "--state", "state.json", named="nope.txt", code=2),
        p("witness state not JSON", "audit", "witness", "--url", "http://127.0.0.1:1",
          "--token-file", "token.txt", "--state", "not-json.json", named="not-json.json", code=2),
        p("policy eval --input missing", "policy", "eval", "--input", "nope.json", named="nope.json", code=2),
        p("policy eval --input not JSON", "policy", "eval", "--input", "not-json.json",
          named="not-json.json", code=2),
        p("policy eval --input binary", "policy", "eval", "--input", "binary.json",
          named="binary.json", code=2),
        p("policy eval --input not an object", "policy", "eval", "--input", "a-number.json",
          named="JSON object", code=2),
        p("policy test missing dir", "policy", "test", "--policy-dir", "/nope", named="/nope"),
        p("policy table missing dir", "policy", "table", "--policy-dir", "/nope", named="/nope"),
        p("subject-report invalid BSN", "audit", "subject-report", "--bsn", "123", named="BSN", code=2),
    ]  # fmt: skip


@pytest.mark.parametrize(("args", "named", "code"), _file_cases())
def test_missing_and_malformed_files_are_one_line_naming_the_file(
    files: Files, args: tuple[str, ...], named: str, code: int | None
) -> None:
    env = {"GATEWAY_DATA_DIR": str(files.root / "data")}
    assert_one_line(cli(*args, env=env, cwd=files.root), named, code=code)


@pytest.mark.parametrize(
    "garbage",
    [b"garbage line\n", b"\xff\xfe\x00 not text\n", b'{"index": "x", "leafData": 5}\n', b"[1]\n"],
    ids=["not-json", "not-utf8", "wrong-types", "not-an-object"],
)
def test_an_export_with_garbage_is_a_finding_not_a_traceback(
    export: tuple[Path, str], garbage: bytes, tmp_path: Path
) -> None:
    source, key = export
    bad = tmp_path / "bad.ndjson"
    _first, *rest = source.read_bytes().splitlines(keepends=True)
    assert rest, "the export should hold more than one entry"
    bad.write_bytes(garbage + b"".join(rest))
    result = cli("audit", "verify-export", str(bad), "--key", key, "--checkpoint", f"{source}.checkpoint")
    assert_one_line(result, "export FAILED", "index 0", code=1)


# -- usage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("frobnicate",), "frobnicate"),
        (("token",), "--client-id"),
        (("serve", "--port", "abc"), "--port"),
        (("clients", "keygen", "x", "--kind", "DSA"), "--kind"),
        (("audit", "verify-export"), "'file'"),
    ],
    ids=["unknown command", "missing option", "not a number", "bad choice", "missing argument"],
)
def test_usage_errors_are_one_line_with_exit_2(args: tuple[str, ...], named: str, tmp_path: Path) -> None:
    result = cli(*args, env={"GATEWAY_DATA_DIR": str(tmp_path)})
    line = assert_one_line(result, named, code=2)
    assert "--help" in line


def test_help_still_works() -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "token" in result.stdout


def test_debug_shows_the_traceback(files: Files, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = cli(
        "token", "--client-id", "x", "--key", str(files.private_key), "--url", url, env={"GATEWAY_DEBUG": "1"}
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_the_installed_command_is_wrapped_too(closed_port: int, tmp_path: Path) -> None:
    binary = Path(sys.executable).parent / "gateway"
    if not binary.exists():
        pytest.skip("the console script is not installed in this environment")
    full = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full |= {"GATEWAY_PORT": "abc", "GATEWAY_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [str(binary), "clients", "list"], capture_output=True, text=True, env=full, timeout=HANG_GUARD
    )
    assert_one_line(result, "GATEWAY_PORT", code=1)


# -- unexpected errors -----------------------------------------------------------------------------------


def test_an_unexpected_error_names_its_type_and_the_debug_switch_but_not_its_message() -> None:
    """A bug's message could hold anything, a BSN included: only its type is shown."""
    from gateway.cli import describe_error

    line, code = describe_error(KeyError("999990019"))
    assert "KeyError" in line and "GATEWAY_DEBUG=1" in line
    assert "999990019" not in line
    assert "\n" not in line
    assert code == 1
