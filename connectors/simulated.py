"""Simulated agency back offices: the embedded default's agency systems and the tests' counterpart.

Every record below is fictional: people appear only by role and age, places are "Voorbeeldstad",
registration numbers start with ``SIM``, and no field holds a BSN. Records deliberately carry more
fields than any recipient should get (``interneNotities``, informant details), so that the gateway's
field minimisation visibly strips some of them.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import replace
from typing import Any

from connectors.base import (
    AGENCIES,
    ConnectorRejected,
    ConnectorUnavailable,
    Delivery,
    DeliveryReceipt,
    FetchRequest,
    FetchResult,
)

Record = dict[str, Any]

_POLITIE: dict[str, list[Record]] = {
    "strafrechtelijke_informatie": [
        {
            "incidenten": [
                {
                    "datum": "2025-03-14",
                    "registratienummer": "SIM-PL-2025-0001",
                    "omschrijving": "Mishandeling partner in woning, Voorbeeldstad; letsel aan arm.",
                },
                {
                    "datum": "2024-11-02",
                    "registratienummer": "SIM-PL-2024-0419",
                    "omschrijving": "Burenmelding geluidsoverlast en geschreeuw; geen aangifte.",
                },
            ],
            "antecedenten": ["Bedreiging (2022, sepot)", "Vernieling (2021, transactie)"],
            "lopendeZaken": [{"feit": "mishandeling (art. 300 Sr)", "status": "proces-verbaal naar OM"}],
            "wapenbezit": {"verlof": False, "aangetroffen": "keukenmes in beslag genomen"},
            "contactverbod": {"opgelegd": True, "tot": "2025-04-14", "grondslag": "voorlopige hechtenis"},
            "interneNotities": "Informant (naam bekend bij wijkagent) meldt eerdere incidenten.",
        },
        {
            "incidenten": [
                {
                    "datum": "2025-01-20",
                    "registratienummer": "SIM-PL-2025-0107",
                    "omschrijving": "Ouder slaat kind (9) in openbare ruimte; getuigen aanwezig.",
                }
            ],
            "antecedenten": [],
            "lopendeZaken": [{"feit": "kindermishandeling (art. 300/304 Sr)", "status": "in onderzoek"}],
            "wapenbezit": {"verlof": False, "aangetroffen": None},
            "contactverbod": {"opgelegd": False},
            "interneNotities": "Verhoor pleger gepland; tactische informatie niet delen.",
        },
    ],
    "melding": [
        {
            "meldingsdatum": "2025-03-14",
            "aanleiding": "Politie ter plaatse na 112-melding; slachtoffer met zichtbaar letsel.",
            "zorgsignalen": ["herhaald geweld", "kinderen aanwezig tijdens incident"],
            "betrokkenen": [
                {"rol": "slachtoffer", "leeftijd": 34},
                {"rol": "pleger", "leeftijd": 37},
                {"rol": "kind", "leeftijd": 6},
            ],
            "acuutGevaar": True,
            "melderGegevens": {"melder": "buurvrouw", "bereikbaar": "via meldkamer"},
            "interneNotities": "Eenheid Voorbeeldstad-Noord; bodycambeelden beschikbaar.",
        }
    ],
    "onderzoeksbevindingen": [
        {
            "onderzoeksdatum": "2025-03-16",
            "bevindingen": "Letsel past bij verklaring slachtoffer; eerdere incidenten niet gemeld.",
            "letsel": "kneuzingen bovenarm, geen ziekenhuisopname",
            "getuigenverklaringen": ["Getuige 1 (buurvrouw): hoorde geschreeuw rond 22:00."],
            "vervolgstappen": ["aangifte opgenomen", "zaak naar OM"],
            "interneNotities": "Tweede verhoor pleger nog niet afgerond.",
        }
    ],
}

_VEILIG_THUIS: dict[str, list[Record]] = {
    "melding": [
        {
            "meldingsdatum": "2025-02-03",
            "melderType": "professional (huisarts)",
            "aanleiding": "Kind (8) vertelt op school over ruzies en slaan thuis.",
            "zorgsignalen": ["kind bang om naar huis te gaan", "ouder weigert hulp"],
            "betrokkenen": [
                {"rol": "kind", "leeftijd": 8},
                {"rol": "ouder", "leeftijd": 41},
                {"rol": "ouder", "leeftijd": 39},
            ],
            "acuutGevaar": False,
            "melderGegevens": {"melder": "huisarts", "anoniemNaarGezin": True},
            "interneNotities": "Melder wil niet dat het gezin weet wie meldde.",
        }
    ],
    "veiligheidsbeoordeling": [
        {
            "beoordelingsdatum": "2025-03-15",
            "veiligheidsniveau": "acuut onveilig",
            "risicofactoren": ["escalerend geweld", "alcoholgebruik pleger", "kinderen getuige"],
            "beschermendeFactoren": ["steunend netwerk slachtoffer (zus)"],
            "instrument": "gestructureerde beoordeling (gesimuleerd)",
            "conclusie": "Directe maatregelen nodig; tijdelijk huisverbod geadviseerd.",
            "interneNotities": "Collegiale toetsing met gedragswetenschapper op 2025-03-15.",
        },
        {
            "beoordelingsdatum": "2025-02-10",
            "veiligheidsniveau": "structureel onveilig",
            "risicofactoren": ["pedagogische onmacht", "schulden"],
            "beschermendeFactoren": ["ouders staan open voor hulp"],
            "instrument": "gestructureerde beoordeling (gesimuleerd)",
            "conclusie": "Vrijwillig hulpverleningstraject met veiligheidsafspraken.",
            "interneNotities": "Huisbezoek verliep gespannen.",
        },
    ],
    "veiligheidsvoorwaarden": [
        {
            "opgesteldOp": "2025-03-17",
            "voorwaarden": [
                "geen fysiek geweld in aanwezigheid van of tegen de kinderen",
                "pleger verblijft niet in de woning tot evaluatie",
            ],
            "afspraken": ["wekelijks contact met casusregisseur", "school meldt afwezigheid direct"],
            "looptijd": "3 maanden",
            "toezicht": "Veilig Thuis Voorbeeldregio",
            "interneNotities": "Ouders reageerden afwerend op voorwaarde 2.",
        }
    ],
    "veiligheidsplan": [
        {
            "vastgesteldOp": "2025-03-24",
            "doelen": ["stoppen van het geweld", "veilig opgroeien van de kinderen"],
            "maatregelen": [
                {"soort": "strafrechtelijk", "omschrijving": "contactverbod als bijzondere voorwaarde"},
                {"soort": "bestuursrechtelijk", "omschrijving": "huisverbod 10 dagen (verlopen)"},
                {"soort": "civielrechtelijk", "omschrijving": "verzoekonderzoek RvdK naar OTS"},
            ],
            "betrokkenPartners": ["politie", "veilig_thuis", "reclassering", "rvdk", "om"],
            "evaluatiedatum": "2025-06-24",
            "interneNotities": "Netwerkberaad gepland; zus wil steunfiguur zijn.",
        }
    ],
    "onderzoeksbevindingen": [
        {
            "onderzoeksperiode": "2025-02-03 tot 2025-03-10",
            "bevindingen": "Kind bevestigt slaan door een ouder; andere ouder beschermt onvoldoende.",
            "gesprekken": ["ouders samen", "kind op school", "leerkracht"],
            "risicofactoren": ["herhaald fysiek geweld", "sociaal isolement"],
            "beschermendeFactoren": ["goede band kind met leerkracht"],
            "interneNotities": "Verklaring leerkracht alleen met toestemming delen.",
        }
    ],
}

_OM: dict[str, list[Record]] = {
    "justitiele_informatie": [
        {
            "parketnummer": "SIM/000001-25",
            "lopendeStrafzaken": [{"feit": "mishandeling (art. 300 Sr)", "fase": "dagvaarding voorbereid"}],
            "vervolgingsbeslissing": "vervolgen; zitting politierechter",
            "bijzondereVoorwaarden": ["contactverbod", "meldplicht reclassering"],
            "justitieleDocumentatie": ["2022 bedreiging: sepot (gesimuleerd)"],
            "interneNotities": "Afstemming met Veilig Thuis in casusoverleg, week 12.",
        }
    ],
}

_RECLASSERING: dict[str, list[Record]] = {
    "reclasseringsinformatie": [
        {
            "toezicht": {"soort": "schorsing voorlopige hechtenis", "looptijd": "tot uitspraak"},
            "bijzondereVoorwaarden": ["contactverbod", "meldplicht", "behandeling agressieregulatie"],
            "risicotaxatie": {"recidiverisico": "gemiddeld", "risicoOpLetsel": "hoog"},
            "adviezen": ["voortzetten contactverbod", "ambulante behandeling"],
            "naleving": "meldplicht nagekomen; geen schendingen bekend",
            "interneNotities": "Cliënt uit zich negatief over slachtoffer in gesprek.",
        }
    ],
}

_RVDK: dict[str, list[Record]] = {
    "kinderbeschermingsinformatie": [
        {
            "lopendOnderzoek": {"soort": "beschermingsonderzoek", "gestartOp": "2025-03-18"},
            "maatregelen": [],
            "verzoekAanKinderrechter": "voorbereid: ondertoezichtstelling",
            "gezagssituatie": "gezamenlijk gezag ouders",
            "betrokkenKinderen": [{"rol": "kind", "leeftijd": 6}, {"rol": "kind", "leeftijd": 9}],
            "interneNotities": "Raadsonderzoeker spreekt kinderen op school.",
        }
    ],
}

_RECORDS: dict[str, dict[str, list[Record]]] = {
    "politie": _POLITIE,
    "veilig_thuis": _VEILIG_THUIS,
    "om": _OM,
    "reclassering": _RECLASSERING,
    "rvdk": _RVDK,
}


class SimulatedAgencySystem:
    """An in-memory agency back office: keeps what it receives, answers fetches from fictional records.

    Safe to use from several threads: the gateway delivers from request threads while tests read.
    """

    def __init__(self, agency: str) -> None:
        if agency not in AGENCIES:
            raise ValueError(f"unknown agency {agency!r}; expected one of {', '.join(AGENCIES)}")
        self.agency = agency
        self._lock = threading.Lock()
        self._down = False
        self._received: list[Delivery] = []
        self._by_message_id: dict[str, Delivery] = {}
        self._fetch_requests: list[FetchRequest] = []
        self._records = copy.deepcopy(_RECORDS[agency])
        self._case_records: dict[tuple[str, str], Record] = {}

    @property
    def received(self) -> list[Delivery]:
        """Every distinct delivery received, oldest first (a copy: callers cannot disturb the system)."""
        with self._lock:
            return list(self._received)

    @property
    def fetch_requests(self) -> list[FetchRequest]:
        """Every fetch request that reached this system, oldest first."""
        with self._lock:
            return list(self._fetch_requests)

    @property
    def information_types(self) -> frozenset[str]:
        """The information types this agency holds and can answer fetches for."""
        return frozenset(self._records)

    def records(self, information_type: str) -> list[Record]:
        """The stock records for ``information_type`` (copies); empty when this agency does not hold it."""
        return copy.deepcopy(self._records.get(information_type, []))

    def set_down(self, down: bool) -> None:
        """Make the system unreachable (``True``) or bring it back (``False``)."""
        with self._lock:
            self._down = down

    def put_record(self, case_id: str, information_type: str, data: Record) -> None:
        """Hold ``data`` as this agency's record of ``information_type`` for ``case_id``."""
        if information_type not in self._records:
            # An agency answers only for what it keeps; seeding anything else would hide a policy bug.
            raise ValueError(f"{self.agency} does not hold {information_type!r}")
        with self._lock:
            self._case_records[(case_id, information_type)] = copy.deepcopy(data)

    def deliver(self, d: Delivery) -> DeliveryReceipt:
        """Keep ``d``; a repeated ``message_id`` with the same content is kept once and still accepted."""
        with self._lock:
            self._refuse_if_down()
            if d.recipient != self.agency:
                raise ConnectorRejected(self.agency, f"delivery {d.message_id} is addressed to {d.recipient}")
            earlier = self._by_message_id.get(d.message_id)
            if earlier is not None:
                # A retry may carry a new span; only the message itself has to match.
                if replace(d, trace_parent=earlier.trace_parent) != earlier:
                    raise ConnectorRejected(
                        self.agency, f"message id {d.message_id} was already used for another message"
                    )
                return DeliveryReceipt(d.message_id, True, "duplicate of an earlier delivery; kept once")
            self._by_message_id[d.message_id] = d
            self._received.append(d)
            return DeliveryReceipt(d.message_id, True, "received")

    def fetch(self, r: FetchRequest) -> FetchResult:
        """Answer with this agency's record for the case, or ``found=False`` for a type it does not hold."""
        with self._lock:
            self._refuse_if_down()
            if r.holder != self.agency:
                raise ConnectorRejected(self.agency, f"request {r.request_id} is addressed to {r.holder}")
            self._fetch_requests.append(r)
            record = self._case_records.get((r.case_id, r.information_type))
            if record is None:
                stock = self._records.get(r.information_type)
                if not stock:
                    return FetchResult(found=False, data={})
                record = stock[_stable_index(r.case_id, len(stock))]
            return FetchResult(found=True, data=copy.deepcopy(record))

    def health(self) -> bool:
        """False while the system is set down."""
        with self._lock:
            return not self._down

    def _refuse_if_down(self) -> None:
        if self._down:
            raise ConnectorUnavailable(self.agency, "system is down (simulated)")


def _stable_index(case_id: str, n: int) -> int:
    # Same case, same record: a demo that fetches twice must see the same answer, while different
    # cases still show different records.
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:4], "big") % n


def simulated_connectors() -> dict[str, SimulatedAgencySystem]:
    """A fresh simulated system for each of the five agencies."""
    return {agency: SimulatedAgencySystem(agency) for agency in AGENCIES}
