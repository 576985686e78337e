"""The simulated agency back offices: deliveries, fetches, being down, and fictional records."""

from __future__ import annotations

import re
import threading

import pytest

from connectors import (
    AGENCIES,
    Connector,
    ConnectorRejected,
    ConnectorUnavailable,
    SimulatedAgencySystem,
    simulated_connectors,
)
from tests.connectors.samples import TRACEPARENT, make_delivery, make_fetch

HOLDINGS = {
    "politie": {"strafrechtelijke_informatie", "melding", "onderzoeksbevindingen"},
    "veilig_thuis": {
        "melding",
        "veiligheidsbeoordeling",
        "veiligheidsvoorwaarden",
        "veiligheidsplan",
        "onderzoeksbevindingen",
    },
    "om": {"justitiele_informatie"},
    "reclassering": {"reclasseringsinformatie"},
    "rvdk": {"kinderbeschermingsinformatie"},
}


def test_delivery_is_kept_as_received(politie: SimulatedAgencySystem) -> None:
    d = make_delivery()
    receipt = politie.deliver(d)
    assert (receipt.message_id, receipt.accepted, receipt.detail) == ("msg-0001", True, "received")
    assert politie.received == [d]


def test_repeated_message_id_is_kept_once(politie: SimulatedAgencySystem) -> None:
    politie.deliver(make_delivery())
    # A retry may come with another span of the same trace; it is still the same message.
    again = politie.deliver(make_delivery(trace_parent=TRACEPARENT.replace("00f067aa", "11f067aa")))
    assert again.accepted
    assert "duplicate" in again.detail
    assert len(politie.received) == 1


def test_reused_message_id_for_other_content_is_refused(politie: SimulatedAgencySystem) -> None:
    politie.deliver(make_delivery())
    with pytest.raises(ConnectorRejected, match="already used"):
        politie.deliver(make_delivery(payload={"veiligheidsniveau": "veilig"}))
    assert politie.received[0].payload["veiligheidsniveau"] == "acuut onveilig"


def test_misaddressed_delivery_is_refused(politie: SimulatedAgencySystem) -> None:
    with pytest.raises(ConnectorRejected, match="addressed to om") as e:
        politie.deliver(make_delivery(recipient="om"))
    assert e.value.agency == "politie"
    assert politie.received == []


def test_received_is_a_snapshot(politie: SimulatedAgencySystem) -> None:
    politie.received.append(make_delivery())
    assert politie.received == []


def test_concurrent_deliveries_are_all_kept_once() -> None:
    system = SimulatedAgencySystem("veilig_thuis")
    barrier = threading.Barrier(8)

    def send(worker: int) -> None:
        barrier.wait()
        for i in range(50):
            # Every worker also sends the shared ids 0..9: each must land exactly once.
            mid = f"shared-{i}" if i < 10 else f"w{worker}-{i}"
            system.deliver(make_delivery(message_id=mid, recipient="veilig_thuis", sender="politie"))

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [d.message_id for d in system.received]
    assert len(ids) == len(set(ids)) == 10 + 8 * 40


@pytest.mark.parametrize("agency", AGENCIES)
def test_each_agency_answers_for_what_it_holds(agency: str) -> None:
    system = SimulatedAgencySystem(agency)
    assert system.information_types == HOLDINGS[agency]
    for information_type in HOLDINGS[agency]:
        result = system.fetch(make_fetch(holder=agency, information_type=information_type))
        assert result.found
        # Several fields, including some no recipient should get, so minimisation has work to do.
        assert len(result.data) >= 5
        assert "interneNotities" in result.data


def test_strafrechtelijke_informatie_has_the_documented_fields(politie: SimulatedAgencySystem) -> None:
    data = politie.fetch(make_fetch()).data
    assert set(data) == {
        "incidenten",
        "antecedenten",
        "lopendeZaken",
        "wapenbezit",
        "contactverbod",
        "interneNotities",
    }


def test_type_not_held_is_not_found(politie: SimulatedAgencySystem) -> None:
    result = politie.fetch(make_fetch(information_type="kinderbeschermingsinformatie"))
    assert (result.found, result.data) == (False, {})


def test_fetch_records_the_request(politie: SimulatedAgencySystem) -> None:
    r = make_fetch()
    politie.fetch(r)
    assert politie.fetch_requests == [r]


def test_misaddressed_fetch_is_refused(politie: SimulatedAgencySystem) -> None:
    with pytest.raises(ConnectorRejected, match="addressed to om"):
        politie.fetch(make_fetch(holder="om"))


def test_same_case_gets_the_same_record_and_cases_differ(politie: SimulatedAgencySystem) -> None:
    answers = {
        case: politie.fetch(make_fetch(case_id=case)).data["incidenten"][0]["registratienummer"]
        for case in (f"case-{i}" for i in range(20))
    }
    assert (
        answers["case-3"]
        == politie.fetch(make_fetch(case_id="case-3")).data["incidenten"][0]["registratienummer"]
    )
    assert len(set(answers.values())) == len(politie.records("strafrechtelijke_informatie"))


def test_put_record_answers_for_that_case_only(politie: SimulatedAgencySystem) -> None:
    politie.put_record("case-42", "melding", {"aanleiding": "test", "interneNotities": "x"})
    assert politie.fetch(make_fetch(case_id="case-42", information_type="melding")).data == {
        "aanleiding": "test",
        "interneNotities": "x",
    }
    assert "meldingsdatum" in politie.fetch(make_fetch(case_id="case-43", information_type="melding")).data
    with pytest.raises(ValueError, match="does not hold"):
        politie.put_record("case-42", "justitiele_informatie", {})


def test_fetched_data_cannot_change_the_store(politie: SimulatedAgencySystem) -> None:
    politie.fetch(make_fetch()).data["interneNotities"] = "changed"
    assert politie.fetch(make_fetch()).data["interneNotities"] != "changed"


def test_down_system_refuses_everything_until_it_is_back(politie: SimulatedAgencySystem) -> None:
    politie.set_down(True)
    assert politie.health() is False
    with pytest.raises(ConnectorUnavailable):
        politie.deliver(make_delivery())
    with pytest.raises(ConnectorUnavailable):
        politie.fetch(make_fetch())
    assert politie.received == []
    assert politie.fetch_requests == []
    politie.set_down(False)
    assert politie.health() is True
    assert politie.deliver(make_delivery()).accepted


def _nine_digit_runs(value: object) -> list[str]:
    if isinstance(value, dict):
        return [run for k, v in value.items() for run in _nine_digit_runs(k) + _nine_digit_runs(v)]
    if isinstance(value, list):
        return [run for v in value for run in _nine_digit_runs(v)]
    return re.findall(r"(?<!\d)\d{9}(?!\d)", str(value))


@pytest.mark.parametrize("agency", AGENCIES)
def test_records_hold_nothing_shaped_like_a_bsn(agency: str) -> None:
    system = SimulatedAgencySystem(agency)
    records = [r for t in system.information_types for r in system.records(t)]
    assert records
    assert _nine_digit_runs(records) == []


def test_simulated_connectors_cover_every_agency_and_are_connectors() -> None:
    systems = simulated_connectors()
    assert list(systems) == list(AGENCIES)
    for agency, system in systems.items():
        assert system.agency == agency
        assert isinstance(system, Connector)
    # Fresh systems each time: tests must not see each other's deliveries.
    assert simulated_connectors()["politie"] is not systems["politie"]


def test_unknown_agency_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown agency"):
        SimulatedAgencySystem("gemeente")
