"""Minimisation per recipient, end to end: what each agency's (simulated) system actually received."""

from __future__ import annotations

from tests.e2e.conftest import Gateway
from tests.e2e.test_exchanges import result_for, share, structural_plan_case

# Everything Veilig Thuis holds on the safety conditions of one family (fictional).
VOORWAARDEN = {
    "opgesteldOp": "2026-12-03",
    "voorwaarden": "geen geweld in het gezin",
    "voorwaardenPleger": "contactverbod met slachtoffer; meldplicht bij de reclassering",
    "voorwaardenSlachtoffer": "verblijft tijdelijk op een geheim adres",
    "voorwaardenKinderen": "omgang met de vader alleen onder begeleiding",
    "afspraken": "grootouders halen de kinderen van school",
    "looptijd": "3 maanden",
    "toezicht": "casusregisseur Veilig Thuis",
    "betrokkenen": "slachtoffer, pleger, twee kinderen",
    "medischeGegevensSlachtoffer": "fractuur linkerarm, behandeld op de SEH",
    "interneNotities": "alleen voor Veilig Thuis",
}

# Per recipient, the fields its system may receive (the rows of data.json).
EXPECTED = {
    "politie": {
        "opgesteldOp",
        "voorwaarden",
        "voorwaardenPleger",
        "voorwaardenSlachtoffer",
        "voorwaardenKinderen",
        "looptijd",
        "toezicht",
        "betrokkenen",
    },
    "om": {
        "opgesteldOp",
        "voorwaarden",
        "voorwaardenPleger",
        "voorwaardenSlachtoffer",
        "looptijd",
        "toezicht",
    },
    # The reclassering supervises the pleger: the conditions that bind him, nothing about the victim.
    "reclassering": {"opgesteldOp", "voorwaarden", "voorwaardenPleger", "looptijd", "toezicht"},
    "rvdk": {
        "opgesteldOp",
        "voorwaarden",
        "voorwaardenPleger",
        "voorwaardenSlachtoffer",
        "voorwaardenKinderen",
        "afspraken",
        "looptijd",
        "toezicht",
        "betrokkenen",
    },
}


def test_each_agency_system_receives_only_its_fields(gateway: Gateway) -> None:
    case_id = structural_plan_case(gateway)
    gateway.track(case_id, "straf")  # samenloop: OM, reclassering and RvdK take part
    r = share(
        gateway,
        "veilig_thuis",
        case_id,
        informationType="veiligheidsvoorwaarden",
        purpose="zorg_en_straf_afstemmen",
        recipients=list(EXPECTED),
        payload=VOORWAARDEN,
    )
    assert r.status_code == 200, r.text

    arrived: dict[str, set[str]] = {}
    for agency in EXPECTED:
        result = result_for(r, agency)
        assert result["allowed"] is True, result["reasons"]
        (delivery,) = [
            d for d in gateway.runtime.connectors[agency].received if d.message_id == result["messageId"]
        ]
        assert delivery.recipient == agency
        assert delivery.purpose == "zorg_en_straf_afstemmen"
        assert delivery.payload == {k: VOORWAARDEN[k] for k in delivery.payload}  # values untouched
        arrived[agency] = set(delivery.payload)
        assert set(result["fields"]) == arrived[agency]

    assert arrived == EXPECTED
    # The victim's medical details and Veilig Thuis's own notes reached no agency.
    for fields in arrived.values():
        assert "medischeGegevensSlachtoffer" not in fields
        assert "interneNotities" not in fields
    # What the reclassering did not get, concretely.
    assert {"voorwaardenSlachtoffer", "voorwaardenKinderen", "afspraken", "betrokkenen"}.isdisjoint(
        arrived["reclassering"]
    )
