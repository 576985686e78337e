"""``gateway demo``: the seed's process ("Samen op in acuut") played over real HTTP on a fresh gateway.

An acute case goes through all five steps, is handed over to the structural flow and reaches the safety
plan. On the way it shows the samenloop rule: the veiligheidsbeoordeling reaches om, reclassering and rvdk
only once both the zorg and the straf track are open. It ends by printing the trail from the audit log and
verifying the log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from audit import verify_log
from connectors import AGENCIES
from gateway.app import create_app
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.settings import REPO_ROOT, Settings
from standins.local_server import free_port, reserve_socket, serve_in_thread

AGENCY_START_WAIT = 90.0
"""Seconds the distributed demo waits for a sim-agency process to answer its health endpoint."""
DELIVERY_WAIT = 60.0
"""Seconds the distributed demo waits for every allowed message to reach its agency's store."""

# Test BSNs from the RvIG test range (999990xxx): fictional people.
SUBJECTS = [
    {"role": "slachtoffer", "bsn": "999990019"},
    {"role": "pleger", "bsn": "999990020"},
    {"role": "kind", "bsn": "999990032"},
]


@dataclass(frozen=True)
class Step:
    """One move of the scenario: who does what, and what the process expects to happen."""

    actor: str
    kind: str  # share | request | transition | track
    args: dict[str, Any]
    says: str
    expect: str = "allowed"  # allowed | refused (for shares: per-recipient outcome as a whole)


def _share(
    actor: str, info: str, purpose: str, to: list[str], payload: dict[str, Any], says: str, **kw: Any
) -> Step:
    args = {"informationType": info, "purpose": purpose, "recipients": to, "payload": payload}
    return Step(actor, "share", args, says, **kw)


def _request(actor: str, info: str, purpose: str, holder: str, says: str) -> Step:
    return Step(actor, "request", {"informationType": info, "purpose": purpose, "holder": holder}, says)


def _move(actor: str, step: str, says: str, flow: str | None = None) -> Step:
    return Step(actor, "transition", {"step": step} | ({"flow": flow} if flow else {}), says)


# Payloads hold more than any recipient may see: the gateway strips what the policy does not list.
MELDING = {
    "datumTijd": "2026-11-28T02:14:00Z",
    "locatie": "Voorbeeldstad (fictief adres)",
    "aard": "fysiek geweld, kind aanwezig",
    "meldingstekst": "Buren melden geschreeuw en slaan.",
    "politieRegistratienummer": "SIM-PL-2026-000123",
    "interneOpmerking": "niet voor derden",
}
FINDINGS = {
    "onderzoeksperiode": "28-11-2026 t/m 02-12-2026",
    "bevindingen": "escalerend partnergeweld, kind getuige",
    "gesprekken": "moeder, school, huisarts",
    "getuigenverklaringen": "buren (via politie)",
    "risicofactoren": "eerdere incidenten, alcohol",
    "beschermendeFactoren": "grootouders betrokken",
    "werkhypothese": "interne werkaantekening",
}
HUISVERBOD = {
    "soort": "tijdelijk huisverbod",
    "omschrijving": "huisverbod en contactverbod voor de pleger",
    "ingangsdatum": "2026-11-28",
    "einddatum": "2026-12-08",
    "voorwaarden": "geen contact met slachtoffer en kind",
    "betrokkenen": "pleger",
    "uitvoerder": "burgemeester",
    "risicotaxatieToelichting": "RiHG: hoog risico (intern)",
}
OVERDRACHT = {
    "samenvatting": "acute fase afgerond, huisverbod loopt",
    "afspraken": "dagelijks contact met moeder",
    "openstaandeActies": "structurele aanpak starten",
    "contactpersonen": "casusregisseur Veilig Thuis",
    "dossierHistorie": "eerdere meldingen 2024 (intern)",
}
BEOORDELING = {
    "beoordelingsdatum": "2026-12-03",
    "conclusie": "structureel onveilig",
    "risicofactoren": "eerdere incidenten",
    "beschermendeFactoren": "netwerk grootouders",
    "veiligheidsvoorwaarden": "geen geweld, geen contact zonder toezicht",
    "hulpverleningsgeschiedenis": "jeugdhulp 2023-2024",
    "medischeGegevensSlachtoffer": "kneuzingen (huisarts)",
}
ASSESSMENT_TO = ["om", "reclassering", "rvdk"]

SCENARIO: list[Step] = [
    # Acuut onveilig 1: fysieke veiligheid
    _share(
        "politie",
        "melding",
        "veiligheid_herstellen",
        ["veilig_thuis"],
        MELDING,
        "politie restores physical safety and reports to Veilig Thuis",
    ),
    Step("veilig_thuis", "track", {"track": "zorg", "open": True}, "Veilig Thuis opens the care track"),
    # 2: motorkapoverleg
    _move("politie", "motorkapoverleg", "on to the motorkapoverleg"),
    _request(
        "veilig_thuis",
        "strafrechtelijke_informatie",
        "veiligheid_beoordelen",
        "politie",
        "Veilig Thuis asks politie what it knows, for its first safety assessment",
    ),
    _request(
        "veilig_thuis",
        "reclasseringsinformatie",
        "veiligheid_beoordelen",
        "reclassering",
        "Veilig Thuis consults reclassering, which answers the one who asked",
    ),
    _share(
        "reclassering",
        "reclasseringsinformatie",
        "veiligheid_beoordelen",
        ["om"],
        {"toezicht": "lopend"},
        "reclassering tries to share on its own initiative: a consulted party does not",
        expect="refused",
    ),
    # 3: (gezamenlijk) onderzoek
    _move("veilig_thuis", "onderzoek", "on to the (joint) investigation"),
    _share(
        "veilig_thuis",
        "onderzoeksbevindingen",
        "onderzoek_kinderbescherming",
        ["rvdk"],
        FINDINGS,
        "Veilig Thuis asks the RvdK to look into a child protection measure",
    ),
    _share(
        "veilig_thuis",
        "onderzoeksbevindingen",
        "veiligheid_herstellen",
        ["politie"],
        FINDINGS,
        "Veilig Thuis shares its findings with politie (witness statements stay out)",
    ),
    # 4: veiligheidsmaatregelen
    _move("politie", "veiligheidsmaatregelen", "on to the safety measures"),
    _share(
        "politie",
        "maatregel",
        "maatregelen_afstemmen",
        ["om", "reclassering", "veilig_thuis"],
        HUISVERBOD,
        "politie agrees a tijdelijk huisverbod with OM, reclassering and Veilig Thuis",
    ),
    # 5: niet meer acuut
    _move("veilig_thuis", "overdracht", "no longer acute: hand-over"),
    _share(
        "veilig_thuis",
        "overdrachtsdossier",
        "overdracht",
        ["politie"],
        OVERDRACHT,
        "the partners hand over for follow-up",
    ),
    # Structureel onveilig
    _move("veilig_thuis", "melding", "the case moves to the structural flow", flow="structureel"),
    _move("veilig_thuis", "informatie_combineren", "Veilig Thuis combines information"),
    _request(
        "veilig_thuis", "justitiele_informatie", "veiligheid_beoordelen", "om", "Veilig Thuis asks the OM"
    ),
    _move("veilig_thuis", "veiligheidsbeoordeling", "Veilig Thuis assesses safety"),
    _move("veilig_thuis", "veiligheidsplan", "on to the safety plan"),
    _share(
        "veilig_thuis",
        "veiligheidsbeoordeling",
        "zorg_en_straf_afstemmen",
        ASSESSMENT_TO,
        BEOORDELING,
        "only zorg is open: the assessment may not go to OM, 3RO and RvdK",
        expect="refused",
    ),
    Step("politie", "track", {"track": "straf", "open": True}, "politie opens the criminal track: samenloop"),
    _share(
        "veilig_thuis",
        "veiligheidsbeoordeling",
        "zorg_en_straf_afstemmen",
        ASSESSMENT_TO,
        BEOORDELING,
        "zorg and straf overlap: the assessment goes to OM, 3RO and RvdK, each minimised",
    ),
]


@dataclass
class DemoRun:
    """What happened, for the verdict."""

    surprises: list[str] = field(default_factory=list)
    delivered: dict[str, list[str]] = field(default_factory=dict)
    """Recipient -> the message ids the gateway allowed to it, in order."""


class _Agency:
    """An agency system: its key, and a token fetched with a private_key_jwt client assertion."""

    def __init__(self, http: httpx.Client, base: str, client_id: str, private_pem: bytes) -> None:
        self.http, self.base, self.client_id, self.private_pem = http, base, client_id, private_pem

    def headers(self) -> dict[str, str]:
        assertion = make_client_assertion(self.client_id, self.private_pem, f"{self.base}/oauth2/token")
        r = self.http.post(
            f"{self.base}/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


@contextlib.contextmanager
def sim_agencies(directory: Path, gateway_url: str) -> Iterator[dict[str, str]]:
    """Start the five ``gateway sim-agency`` processes on free ports; yields agency -> base URL."""
    urls: dict[str, str] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for agency in AGENCIES:
            port = free_port()
            command = [sys.executable, "-m", "gateway.cli", "sim-agency", "--agency", agency]
            command += ["--port", str(port), "--data-dir", str(directory), "--gateway-url", gateway_url]
            procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, env=os.environ.copy()))
            urls[agency] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + AGENCY_START_WAIT
        for (agency, url), proc in zip(urls.items(), procs, strict=True):
            while not _answers(f"{url}/veilig-delen/health"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sim-agency {agency} did not start on {url}")
                time.sleep(0.05)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def check_agency_stores(urls: dict[str, str], run: DemoRun, out: Any) -> None:
    """Wait until each agency's own store holds the messages allowed to it, each once; report it."""
    out("\nAgency systems (separate processes; each verified the gateway's signature before storing):")
    deadline = time.monotonic() + DELIVERY_WAIT
    for agency, url in urls.items():
        expected = run.delivered.get(agency, [])
        while True:
            stored = {m["messageId"]: m["times"] for m in httpx.get(f"{url}/sim/received").json()["messages"]}
            missing = [m for m in expected if m not in stored]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        unexpected = sorted(set(stored) - set(expected))
        repeats = sum(t - 1 for t in stored.values())
        out(
            f"    {agency:<13} {len(stored)} stored of {len(expected)} allowed"
            f"{f' ({repeats} repeated deliveries kept once)' if repeats else ''}"
        )
        if missing:
            run.surprises.append(f"{agency}: {len(missing)} allowed messages never reached its store")
        if unexpected:
            run.surprises.append(f"{agency}: stored {len(unexpected)} messages it was not allowed")


def run_demo(data_dir: Path | None = None, verbose: bool = True, distributed: bool = False) -> bool:
    """Play the scenario; True when everything went as the process says and the log verifies.

    ``distributed``: the five agency systems run as separate ``gateway sim-agency`` processes, reached
    over HTTP with signed deliveries, and each one's own store is checked at the end.
    """
    base_dir = data_dir or REPO_ROOT / "var"
    fresh = base_dir / f"demo-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    sock = reserve_socket()
    port = int(sock.getsockname()[1])
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        if distributed:
            # Beside the gateway's data directory, not in it: the agencies' stores hold what they received.
            agencies_dir = fresh.with_name(fresh.name + "-agencies")
            urls = stack.enter_context(sim_agencies(agencies_dir, f"http://127.0.0.1:{port}"))
        return _run(fresh, sock, port, urls, verbose)


def _run(fresh: Path, sock: Any, port: int, urls: dict[str, str], verbose: bool) -> bool:
    if urls:
        settings = Settings(data_dir=fresh, port=port, connectors="http", agency_urls=urls)
    else:
        settings = Settings(data_dir=fresh, port=port)
    app = create_app(settings)
    rt = app.state.runtime
    registry = ClientRegistry(rt.sessions)
    keys: dict[str, bytes] = {}
    for agency in AGENCIES:
        private_pem, public_pem = generate_keypair("Ed25519")
        registry.register(f"{agency}-system", agency, "agency_system", public_pem)
        keys[agency] = private_pem
    private_pem, public_pem = generate_keypair("Ed25519")
    registry.register("landelijk-auditor", "veilig_thuis", "auditor", public_pem)
    keys["auditor"] = private_pem

    out = print if verbose else (lambda *_a, **_k: None)
    out(f"Veilig Delen demo: fresh gateway in {fresh}, policy {rt.policy.current.revision[:19]}")
    if urls:
        out(f"agency systems: {', '.join(f'{a} {u}' for a, u in urls.items())}")
    run = DemoRun()
    with serve_in_thread(app, sock=sock) as base, httpx.Client(timeout=30) as http:
        agencies = {a: _Agency(http, base, f"{a}-system", keys[a]) for a in AGENCIES}
        auditor = _Agency(http, base, "landelijk-auditor", keys["auditor"])
        r = http.post(
            f"{base}/v1/cases",
            json={"flow": "acuut", "subjects": SUBJECTS},
            headers=agencies["politie"].headers(),
        )
        r.raise_for_status()
        case_id = r.json()["caseId"]
        out(f"\npolitie opens acute case {case_id[:8]} (slachtoffer, pleger, kind)")
        for step in SCENARIO:
            _play(http, base, agencies[step.actor], step, case_id, run, out)
        if urls:
            check_agency_stores(urls, run, out)
        trail = _trail(http, base, auditor, case_id)
        checkpoint = http.get(f"{base}/v1/audit/checkpoint", headers=auditor.headers()).text
    print_trail(trail, out if verbose else print)
    result = verify_log(rt.audit, rt.signer.verifier_key())
    size = int(checkpoint.splitlines()[1])
    print(
        f"\nAudit log: {result.size} entries; signed checkpoint at size {size}: {checkpoint.splitlines()[2]}"
    )
    print("Audit log verified: OK" if result.ok else f"Audit log verification FAILED: {result.reason}")
    for s in run.surprises:
        print(f"UNEXPECTED: {s}")
    rt.close()
    return result.ok and not run.surprises


def _play(
    http: httpx.Client, base: str, agency: _Agency, step: Step, case_id: str, run: DemoRun, out: Any
) -> None:
    actor = agency.client_id.removesuffix("-system")
    headers = agency.headers()
    if step.kind == "share":
        r = http.post(f"{base}/v1/cases/{case_id}/shares", json=step.args, headers=headers)
        body = r.json()
        results = body.get("results", [])
        allowed = [x for x in results if x["allowed"]]
        outcome = (
            "allowed" if results and len(allowed) == len(results) else "refused" if not allowed else "partly"
        )
        out(f"\n[{actor}] {step.says}")
        for x in results:
            if x["allowed"] and x.get("messageId"):
                run.delivered.setdefault(x["recipient"], []).append(x["messageId"])
            verdict = "ALLOWED" if x["allowed"] else "REFUSED"
            why = (
                x["legalBasis"] if x["allowed"] else ", ".join(dict.fromkeys(c["code"] for c in x["reasons"]))
            )
            fields = f" fields={x.get('fields')}" if x["allowed"] else ""
            out(f"    share {step.args['informationType']} -> {x['recipient']}: {verdict} ({why}){fields}")
    elif step.kind == "request":
        r = http.post(f"{base}/v1/cases/{case_id}/requests", json=step.args, headers=headers)
        body = r.json()
        outcome = "allowed" if r.status_code == 200 else "refused"
        out(f"\n[{actor}] {step.says}")
        if r.status_code == 200:
            out(
                f"    request {step.args['informationType']} from {step.args['holder']}: ALLOWED "
                f"({body['legalBasis']}) fields={body['fields']}"
            )
        else:
            out(
                f"    request {step.args['informationType']} from {step.args['holder']}: REFUSED "
                f"({', '.join(c['code'] for c in body.get('reasons', []))}) [{r.status_code}]"
            )
    elif step.kind == "transition":
        r = http.post(f"{base}/v1/cases/{case_id}/transitions", json=step.args, headers=headers)
        outcome = "allowed" if r.status_code == 200 else "refused"
        where = r.json().get("step", "?") if r.status_code == 200 else r.json().get("detail")
        out(f"\n[{actor}] {step.says} -> {r.json().get('flow', '')}/{where}")
    else:
        r = http.put(
            f"{base}/v1/cases/{case_id}/tracks/{step.args['track']}",
            json={"open": step.args["open"]},
            headers=headers,
        )
        outcome = "allowed" if r.status_code == 200 else "refused"
        out(f"\n[{actor}] {step.says}: {'done' if r.status_code == 200 else r.json().get('detail')}")
    if outcome != step.expect:
        run.surprises.append(f"{actor}: {step.says}: expected {step.expect}, got {outcome} ({r.status_code})")


def _trail(http: httpx.Client, base: str, auditor: _Agency, case_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"caseId": case_id, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        r = http.get(f"{base}/v1/audit/entries", params=params, headers=auditor.headers())
        r.raise_for_status()
        page = r.json()
        entries += [{"index": e["index"], **e["entry"]} for e in page["entries"]]
        cursor = page.get("next")
        if not cursor:
            return entries


def print_trail(entries: list[dict[str, Any]], out: Any = print) -> None:
    """The trail as a privacy officer reads it: step, who, what, to whom, decision, legal basis."""
    out("\nTrail of the case (from the audit log):")
    header = ("#", "step", "who", "action", "what", "to/from", "decision", "outcome", "legal basis / reason")
    row = "{:>3}  {:<34} {:<12} {:<15} {:<27} {:<12} {:<8} {:<10} {}"
    out(row.format(*header))
    for e in entries:
        d = e.get("decision") or {}
        verdict = ("allowed" if d.get("allowed") else "refused") if d else "-"
        codes = dict.fromkeys(r["code"] for r in d.get("reasons", []) if r["code"] != "allowed")
        why = d.get("legalBasis") if d.get("allowed") else ", ".join(codes)
        out(
            row.format(
                e["index"],
                e.get("step", "-"),
                e["actor"]["agency"],
                e["action"],
                e.get("informationType", "-"),
                e.get("counterpart", "-"),
                verdict,
                e.get("outcome", "-"),
                why or "",
            )
        )
