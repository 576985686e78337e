"""What the commands share: the data-directory option, settings, the recorded URL."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

# Settings (pydantic) load when a command reads them, not for ``gateway --help``.
if TYPE_CHECKING:
    import httpx

    from gateway.settings import Settings


DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Data directory (GATEWAY_DATA_DIR)")]  # noqa: UP045


DEBUG_ENV = "GATEWAY_DEBUG"


URL_FILE = "gateway.url"


"""Where ``gateway serve`` records the URL it serves on, in its data directory, for ``gateway token``."""


def settings_for(data_dir: Path | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with command-line options on top."""
    from gateway.settings import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


def check_data_dir(path: Path) -> None:
    """Refuse a data directory that is, or lies under, a file, before anything is created in it."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise typer.TyperException(
                    f"data directory {path}: {candidate} is a file, not a directory "
                    "(GATEWAY_DATA_DIR, --data-dir)"
                )
            return


def gateway_url(url: str | None, data_dir: Path | None) -> tuple[str, str]:
    """The gateway's base URL and where it came from: ``--url``, what ``serve`` recorded, or the settings."""
    if url:
        return url.rstrip("/"), "--url"
    settings = settings_for(data_dir)
    recorded = settings.data_dir / URL_FILE
    if recorded.is_file():
        text = recorded.read_text(encoding="utf-8", errors="replace").strip()
        if not re.fullmatch(r"https?://\S+", text):
            raise typer.TyperException(f"{recorded} holds no URL; remove it or give --url")
        return text.rstrip("/"), f"recorded by gateway serve in {recorded}"
    return settings.base_url, "GATEWAY_PUBLIC_URL" if settings.public_url else "GATEWAY_HOST, GATEWAY_PORT"


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def listen(host: str, port: int, hint: str = "") -> socket.socket:
    """A socket bound to ``host:port``, as uvicorn would bind it, or one line saying why not (``hint``:
    the settings and options that name the address, appended in brackets)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as e:
        sock.close()
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        where = f" ({hint})" if hint else ""
        raise typer.TyperException(f"cannot listen on {host}:{port}: {reason}{where}") from e
    return sock
