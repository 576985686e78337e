"""``gateway policy impact`` and ``gateway policy reload``: what a change does, before it is live.

``impact`` works on the database directly (no running gateway needed): it replays the recorded decision
inputs on the candidate directory and on the revision that serves now, and exits 0 when no decision
changes, 1 when some do (so CI can gate on it), 2 when it cannot tell (one line on stderr).
``reload`` asks a running gateway to switch, optionally only if the impact is the reviewed one.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from gateway.cli._common import DataDir, gateway_url, settings_for

if TYPE_CHECKING:
    from gateway.services.impact import CandidateRefused


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as e:
        raise typer.BadParameter("not a time; e.g. 2026-12-01T10:00:00Z", param_hint="--since") from e
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _refused_line(e: CandidateRefused) -> str:
    errors = e.errors or []
    first = f": {errors[0]['field']}: {errors[0]['message']}" if errors else ""
    more = f" (en nog {len(errors) - 1})" if len(errors) > 1 else ""
    return f"kandidaat geweigerd, {e.detail}{first}{more}".replace("\n", " ")


def impact(
    policy_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(
            help="The candidate policy directory (default: GATEWAY_POLICY_DIR, else policies/)",
            file_okay=False,
        ),
    ] = None,
    last: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, max=100_000, help="Replay the newest N recorded decisions (default 1000)"),
    ] = None,
    since: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Replay the decisions since this time (RFC 3339; UTC when no offset)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Also write the JSON report here (for review, and reload --expect-impact)"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Replay recorded decisions on the candidate and list every decision that changes."""
    from gateway.cli.audit import _engine
    from gateway.errors import GatewayError
    from gateway.services.impact import CandidateRefused, impact_of, render_text

    if last is not None and since is not None:
        raise typer.BadParameter("give --last or --since, not both", param_hint="--since")
    when = _since(since)
    settings = settings_for(data_dir)
    candidate = policy_dir if policy_dir is not None else settings.policy_dir
    try:
        report = impact_of(_engine(settings), candidate, last=last, since=when)
    except CandidateRefused as e:
        typer.echo(f"error: {_refused_line(e)}", err=True)
        raise typer.Exit(2) from e
    except GatewayError as e:
        typer.echo(f"error: {e.detail}", err=True)
        raise typer.Exit(2) from e
    except typer.Exit as e:  # no data directory: said already, and a 2 rather than "changes"
        raise typer.Exit(2) from e
    except Exception as e:  # 1 means "decisions change": any other failure is a 2, said in one line
        from gateway.cli.errors import describe_error

        typer.echo(f"error: {describe_error(e)[0]}", err=True)
        raise typer.Exit(2) from e
    answer = report.to_json()
    if out is not None:
        try:
            out.write_text(json.dumps(answer, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as e:
            typer.echo(f"error: --out {out}: {e.strerror}", err=True)
            raise typer.Exit(2) from e
    if as_json:
        typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        typer.echo(render_text(report), nl=False)
    raise typer.Exit(1 if report.changes else 0)


def reload(
    token: Annotated[
        str,
        typer.Option(
            envvar="GATEWAY_TOKEN",
            help="An access token with scope policy (e.g. from 'gateway token --client-id ... --key ...')",
        ),
    ],
    expect_impact: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--expect-impact",
            help="A reviewed impact report (impact --out): refuse the switch when the impact differs",
            dir_okay=False,
        ),
    ] = None,
    url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="The gateway's base URL (default: what 'gateway serve' recorded, or the settings)"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Ask the running gateway to load its policy directory (POST /v1/policies/reload)."""
    import httpx

    body: dict[str, Any] = {}
    if expect_impact is not None:
        try:
            body["expectImpact"] = json.loads(expect_impact.read_text(encoding="utf-8"))
        except OSError as e:
            raise typer.BadParameter(f"{expect_impact}: {e.strerror}", param_hint="--expect-impact") from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise typer.BadParameter(
                f"{expect_impact}: not a JSON report", param_hint="--expect-impact"
            ) from e
    base, source = gateway_url(url, data_dir)
    try:
        r = httpx.post(
            f"{base}/v1/policies/reload",
            json=body or None,
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
        )
    except (httpx.TransportError, httpx.InvalidURL) as e:
        raise typer.TyperException(f"no gateway answers at {base} ({source}); give --url") from e
    answer = _json(r)
    if r.status_code == 200 and isinstance(answer, dict):
        typer.echo(f"geladen: {answer.get('revision')} (was {answer.get('previousRevision')})")
        return
    detail = answer.get("detail") if isinstance(answer, dict) else None
    errors = answer.get("errors") if isinstance(answer, dict) else None
    first = ""
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = f": {errors[0].get('field')}: {errors[0].get('message')}"
    typer.echo(f"error: niet geladen ({r.status_code}): {detail or r.reason_phrase}{first}"[:2000], err=True)
    raise typer.Exit(1)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
