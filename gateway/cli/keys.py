"""``gateway keys ...``: list, stage, rotate and retire the gateway's signing keys.

Three keys sign something others verify later, and a rotation keeps what the old key signed verifying:

- ``token``: access tokens. The old key stays in the JWKS and is accepted until the tokens it signed
  have expired (``GATEWAY_ACCESS_TOKEN_TTL`` plus a minute, by default).
- ``delivery``: the RFC 9421 signatures on calls to agency systems. The old ``delivery-`` key stays in
  the JWKS for a grace period (a week by default), for agencies that verify late.
- ``checkpoint``: the audit log's checkpoints; ``gateway audit rotate-key`` does it (the old verifier
  key is kept for good in ``<key file>.retired``: a checkpoint never expires).

Each stage, rotation and retirement is an audit entry (``type: audit``, ``action: keys.*``) naming the
key ids, never key material. Key files are written atomically with mode 0600.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gateway.cli._common import DataDir

if TYPE_CHECKING:
    from gateway.auth.keyring import KeyKind, Rotation
    from gateway.settings import Settings

app = typer.Typer(help="The gateway's signing keys: list, stage, rotate, retire", no_args_is_help=True)


class Key(StrEnum):
    """The keys ``gateway keys`` knows."""

    token = "token"  # noqa: S105 (a key's name, not a secret)
    delivery = "delivery"
    checkpoint = "checkpoint"


class RingKey(StrEnum):
    """The keys published in the JWKS, which can be staged and retired."""

    token = "token"  # noqa: S105
    delivery = "delivery"


_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

Grace = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--grace",
        help="How long the old key stays published and accepted: seconds, or 90m, 12h, 7d. Default: "
        "token: GATEWAY_ACCESS_TOKEN_TTL + 60 s; delivery: 7d. 0 ends it at once (a leaked key: its "
        "tokens are refused from now on).",
    ),
]


def parse_duration(text: str) -> int:
    """Seconds in ``300``, ``300s``, ``90m``, ``12h`` or ``7d``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(
            f"{text!r} is not a duration such as 300, 90m, 12h or 7d", param_hint="--grace"
        )
    return int(match.group(1)) * _UNIT[match.group(2)]


def default_grace(settings: Settings, kind: KeyKind) -> int:
    """Token: until every token the old key signed has expired, with a margin; delivery: a week."""
    from gateway.auth.keyring import DEFAULT_DELIVERY_GRACE

    if kind == "token":
        # A replica may sign with the old key for up to a second after the rotation (it looks at the
        # file once a second), and clocks differ by up to the leeway: a minute covers both.
        return settings.access_token_ttl + 60
    return DEFAULT_DELIVERY_GRACE


def _record(settings: Settings, data_dir: Path | None, action: str, outcome: str, rotation: Rotation) -> int:
    """Append the audit entry of a key operation; its index."""
    from gateway.auth import Principal
    from gateway.cli.audit import _audit_parts
    from gateway.services.trail import CallContext, make_entry
    from gateway.tracing import from_header

    store, _ = _audit_parts(data_dir)
    operator = Principal(client_id="gateway-cli", agency="operator", role="operator", scopes=frozenset())
    entry = make_entry(
        CallContext(principal=operator, trace=from_header(None)),
        type_="audit",
        action=action,
        outcome=outcome,
    )
    entry["keyRotation"] = rotation.audit_fields()
    [index] = store.append([entry])
    return index


def _settings(data_dir: Path | None) -> Settings:
    from gateway.cli.audit import settings_for

    return settings_for(data_dir)


@app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """Show each key: the one that signs, a staged one, the retired ones and until when they count."""
    import time

    from audit import LogSigner, load_or_create_signing_key, retired_verifier_keys
    from gateway.auth.keyring import key_path, read_key_set
    from gateway.runtime import audit_key_path

    settings = _settings(data_dir)
    now = time.time()
    for kind in ("token", "delivery"):
        path = key_path(settings, kind)
        if not path.exists():
            typer.echo(f"{kind:<10} none yet   ({path}: made at the first start)")
            continue
        keys = read_key_set(path, kind)
        typer.echo(f"{kind:<10} current   {keys.current_kid}  ({path})")
        if keys.staged_kid is not None and keys.staged_kid != keys.current_kid:
            typer.echo(f"{kind:<10} staged    {keys.staged_kid}  (published, signs nothing yet)")
        for old in keys.retired:
            state = "accepted until" if old.alive(now) else "expired"
            typer.echo(f"{kind:<10} retired   {old.kid}  ({state} {_iso(old.until)})")
    path = audit_key_path(settings)
    if path.exists():
        signer = LogSigner(load_or_create_signing_key(path, create=False), settings.log_origin)
        typer.echo(f"{'checkpoint':<10} current   {signer.verifier.key_id.hex()}  {signer.verifier_key()}")
    else:
        typer.echo(f"{'checkpoint':<10} none yet   ({path}: made at the first start of an empty log)")
    for verifier in retired_verifier_keys(path):
        typer.echo(f"{'checkpoint':<10} retired   {verifier.key_id.hex()}  {verifier}  (kept for good)")


@app.command("init")
def keys_init(
    directory: Annotated[Path, typer.Argument(help="Where to make the key files (created 0700)")],
) -> None:
    """Make the four key files before the first start, for a Kubernetes Secret or another key store.

    Replicas that each get a copy of the keys (rather than one shared directory) must all start with
    the same ones: a replica that made its own at first start would sign tokens and checkpoints that
    its neighbours refuse. Existing files are kept (never overwritten); the public ids are printed.
    """
    from audit import LogSigner, load_or_create_signing_key, private_directory, write_private_file
    from gateway.auth.keyring import retired_path, staged_path, write_retired
    from gateway.auth.keys import (
        DELIVERY_KEY_FILE_NAME,
        KEY_FILE_NAME,
        load_or_create_delivery_key,
    )
    from gateway.auth.keys import load_or_create_signing_key as load_or_create_token_key
    from gateway.runtime import AUDIT_KEY_FILE
    from gateway.sealing import SEALING_KEY_FILE, load_or_create_kek

    private_directory(directory)
    made = {p.name for p in directory.iterdir()}
    token = load_or_create_token_key(directory, directory / KEY_FILE_NAME)
    delivery = load_or_create_delivery_key(directory, directory / DELIVERY_KEY_FILE_NAME)
    audit_key = load_or_create_signing_key(directory / AUDIT_KEY_FILE)
    load_or_create_kek(directory / SEALING_KEY_FILE, create=True)
    # The companions a rotation fills in, present from the start (empty: nothing staged, none retired),
    # so that a Secret made from this directory always names the same files.
    for name in (KEY_FILE_NAME, DELIVERY_KEY_FILE_NAME):
        write_private_file(staged_path(directory / name), b"")
        if not retired_path(directory / name).exists():
            write_retired(directory / name, ())
    write_private_file(directory / f"{AUDIT_KEY_FILE}.retired", b"")
    origin = _settings(None).log_origin
    for name, what in (
        (KEY_FILE_NAME, f"token key {token.kid}"),
        (DELIVERY_KEY_FILE_NAME, f"delivery key {delivery.kid}"),
        (AUDIT_KEY_FILE, f"checkpoint key {LogSigner(audit_key, origin).verifier_key()}"),
        (SEALING_KEY_FILE, "sealing key (secret: back it up apart from the database)"),
    ):
        typer.echo(f"{'kept' if name in made else 'made'} {directory / name}: {what}")


@app.command("stage")
def keys_stage(
    key: Annotated[RingKey, typer.Argument(help="token or delivery")],
    data_dir: DataDir = None,
) -> None:
    """Make the next key and publish it in the JWKS, signing nothing yet; ``rotate`` then uses it.

    Stage first when anything must learn the new key before it signs: replicas whose key files are
    copied to them (a Kubernetes Secret, mounted after a rollout), or an agency that registers the
    delivery key by hand instead of reading the JWKS.
    """
    from gateway.auth.keyring import RotationRefused, key_path, stage

    settings = _settings(data_dir)
    kind: KeyKind = key.value
    path = _existing(key_path(settings, kind), kind)
    try:
        staged = stage(path, kind)
    except RotationRefused as e:
        raise typer.TyperException(str(e)) from e
    index = _record(settings, data_dir, "keys.stage", "staged", staged)
    typer.echo(
        f"staged {kind} key {staged.new_kid} (entry {index}); it signs after: gateway keys rotate {kind}"
    )


@app.command("rotate")
def keys_rotate(
    key: Annotated[Key, typer.Argument(help="token, delivery or checkpoint")],
    data_dir: DataDir = None,
    grace: Grace = None,
) -> None:
    """Sign with the staged key (or a new one) from now on; the old key keeps verifying for ``--grace``.

    Running gateways sharing the key files follow within a second, without a restart. Where the files
    are copied to them instead, roll the copies out (stage, roll out, rotate, roll out: see
    docs/operations.md). ``checkpoint`` is ``gateway audit rotate-key``: stop the gateways first.
    """
    if key is Key.checkpoint:
        from gateway.cli.audit import audit_rotate_key

        if grace is not None:
            raise typer.BadParameter(
                "a checkpoint key has no grace period: its verifier key is kept for good",
                param_hint="--grace",
            )
        audit_rotate_key(data_dir=data_dir, lost_key=False, old_key=None)
        return
    import time

    from gateway.auth.keyring import Rotation, RotationRefused, key_path, read_key_set, rotate, stage

    settings = _settings(data_dir)
    kind: KeyKind = "token" if key is Key.token else "delivery"
    now = int(time.time())
    seconds = default_grace(settings, kind) if grace is None else parse_duration(grace)
    path = _existing(key_path(settings, kind), kind)
    try:
        keys = read_key_set(path, kind)
        if keys.staged is None or keys.staged_kid == keys.current_kid:
            # Stage first, so the entry can name the new key before it signs; a failed append then
            # leaves a published key that signs nothing, and the old one still signing.
            stage(path, kind)
            keys = read_key_set(path, kind)
        planned = Rotation(kind, old_kid=keys.current_kid, new_kid=keys.staged_kid, until=now + seconds)
        index = _record(settings, data_dir, "keys.rotate", "rotated", planned)
        done = rotate(path, kind, grace=seconds, now=now)
    except RotationRefused as e:
        raise typer.TyperException(str(e)) from e
    typer.echo(f"rotated the {kind} key (entry {index}): {done.new_kid} signs from now on")
    if seconds == 0:
        typer.echo(f"old key {done.old_kid} refused from now on (--grace 0)")
    else:
        assert done.until is not None
        typer.echo(f"old key {done.old_kid} published and accepted until {_iso(done.until)}")
    typer.echo(f"after that: gateway keys retire {kind}")


@app.command("retire")
def keys_retire(
    key: Annotated[Optional[RingKey], typer.Argument(help="token or delivery; default both")] = None,  # noqa: UP045
    data_dir: DataDir = None,
) -> None:
    """Remove the retired keys whose grace period is over from the key history (and so from view).

    They are no longer published or accepted anyway; this makes the history say so.
    """
    import time

    from gateway.auth.keyring import Rotation, key_path, read_key_set, retire

    settings = _settings(data_dir)
    kinds: list[KeyKind] = [key.value] if key is not None else ["token", "delivery"]
    now = int(time.time())
    for kind in kinds:
        path = key_path(settings, kind)
        if not path.exists():
            continue
        dead = [k.kid for k in read_key_set(path, kind).retired if not k.alive(now)]
        if not dead:
            typer.echo(f"{kind}: nothing to retire")
            continue

        index = _record(
            settings, data_dir, "keys.retire", "retired", Rotation(kind, None, None, removed=tuple(dead))
        )
        done = retire(path, kind, now=now)
        typer.echo(f"{kind}: retired {', '.join(done.removed)} (entry {index})")


def _existing(path: Path, kind: str) -> Path:
    if not path.exists():
        raise typer.TyperException(
            f"no {kind} key at {path} yet (it is made at the first start of the gateway); nothing to rotate"
        )
    return path


def _iso(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).isoformat().replace("+00:00", "Z")
