# METADATA
# title: Tests of the Veilig Delen decision
# description: >-
#   Positive and negative cases for baseline rules 1-8, the demo scenario, and the consistency of
#   data.json. Most tests call decision.decide({...}) with a literal input. The few that go through
#   the entrypoint set input field by field (with input.action as ...): replacing the whole input
#   (with input as {...}) crashes regopy 1.5.2, and the test runner refuses it.
package veiligdelen.decision_test

import data.veiligdelen.decision

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

_actor(agency) := {"agency": agency, "clientId": sprintf("%v-system", [agency]), "role": "agency_system"}

_case(flow, step, zorg, straf) := {
	"flow": flow,
	"step": step,
	"tracks": {"zorg": zorg, "straf": straf},
	"subjectRoles": ["slachtoffer", "pleger", "kind"],
	"involved": [],
}

_case_roles(flow, step, zorg, straf, roles) := object.union(_case(flow, step, zorg, straf), {"subjectRoles": roles})

_case_involved(flow, step, involved) := object.union(_case(flow, step, false, false), {"involved": involved})

_share(sender, c, type, purpose, recipients, fields) := decision.decide({
	"action": "share",
	"actor": _actor(sender),
	"case": c,
	"informationType": type,
	"purpose": purpose,
	"recipients": recipients,
	"payloadFields": fields,
})

_request(requester, c, type, purpose, holder) := decision.decide({
	"action": "request",
	"actor": _actor(requester),
	"case": c,
	"informationType": type,
	"purpose": purpose,
	"holder": holder,
})

_transition(agency, c, flow, step) := decision.decide({
	"action": "case.transition",
	"actor": _actor(agency),
	"case": c,
	"transition": {"flow": flow, "step": step},
})

_track(agency, c, name, open) := decision.decide({
	"action": "case.track",
	"actor": _actor(agency),
	"case": c,
	"track": {"name": name, "open": open},
})

_open(agency, flow, step) := decision.decide({
	"action": "case.open",
	"actor": _actor(agency),
	"case": {"flow": flow, "step": step, "subjectRoles": ["slachtoffer"]},
})

_read(agency, c) := decision.decide({"action": "case.read", "actor": _actor(agency), "case": c})

# The reason codes of a decision (or one recipient's part): the code each reason's template reports.
_codes(part) := {_code(x) | some x in part.reasons}

_code(reason) := data.veiligdelen.facts.messages[reason.template].code

_plan(zorg, straf) := _case("structureel", "veiligheidsplan", zorg, straf)

_beoordeling := ["conclusie", "risicofactoren", "hulpverleningsgeschiedenis", "medischeGegevens"]

# ---------------------------------------------------------------------------------------------
# The demo: structureel/veiligheidsplan, Veilig Thuis shares its safety assessment
# ---------------------------------------------------------------------------------------------

test_demo_refused_while_only_zorg_is_open if {
	r := _share(
		"veilig_thuis", _plan(true, false), "veiligheidsbeoordeling", "zorg_en_straf_afstemmen",
		["om", "reclassering", "rvdk"], _beoordeling,
	)
	r.allowed == false
	"samenloop_required" in _codes(r)
	every a in ["om", "reclassering", "rvdk"] {
		r.recipients[a].allowed == false
		"samenloop_required" in _codes(r.recipients[a])
		r.recipients[a].fields == []
	}
	r.obligations == []
	r.legalBasis == null
}

test_demo_allowed_for_all_three_under_samenloop if {
	r := _share(
		"veilig_thuis", _plan(true, true), "veiligheidsbeoordeling", "zorg_en_straf_afstemmen",
		["om", "reclassering", "rvdk"], _beoordeling,
	)
	r.allowed == true
	every a in ["om", "reclassering", "rvdk"] {
		r.recipients[a].allowed == true
		_codes(r.recipients[a]) == {"allowed"}
		r.recipients[a].purpose == "zorg_en_straf_afstemmen"
		is_string(r.recipients[a].legalBasis)
	}
	r.recipients.rvdk.legalBasis == "Wmo 2015 art. 4.1.1 lid 2 sub e en f; BW Boek 1 art. 1:240"
}

test_demo_minimises_per_recipient if {
	r := _share(
		"veilig_thuis", _plan(true, true), "veiligheidsbeoordeling", "zorg_en_straf_afstemmen",
		["om", "rvdk"], _beoordeling,
	)
	r.recipients.om.fields == ["conclusie", "risicofactoren"]
	r.recipients.rvdk.fields == ["conclusie", "hulpverleningsgeschiedenis", "risicofactoren"]
	some o in r.obligations
	o.code == "strip_fields"
	o.recipient == "om"
	o.removed == ["hulpverleningsgeschiedenis", "medischeGegevens"]
}

test_demo_straf_alone_is_not_samenloop if {
	r := _share(
		"veilig_thuis", _plan(false, true), "veiligheidsbeoordeling", "zorg_en_straf_afstemmen",
		["om"], ["conclusie"],
	)
	not r.allowed
	"samenloop_required" in _codes(r.recipients.om)
}

# ---------------------------------------------------------------------------------------------
# Rule 1: deny by default; every allow names its legal basis and purpose
# ---------------------------------------------------------------------------------------------

test_allow_names_legal_basis_and_purpose if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["veilig_thuis"], ["aard", "locatie", "interneNotities"],
	)
	r.allowed
	r.legalBasis == "Wmo 2015 art. 5.2.6 (meldrecht)"
	some reason in r.recipients.veilig_thuis.reasons
	reason.template == "allowed_exchange_unverified"
	reason.args == ["veilig_thuis", "melding", "politie", "veiligheid_herstellen", "Wmo 2015 art. 5.2.6 (meldrecht)"]
}

test_verified_basis_has_no_unverified_note if {
	r := _share(
		"veilig_thuis", _case("acuut", "onderzoek", false, false), "kinderbeschermingsinformatie",
		"onderzoek_kinderbescherming", ["rvdk"], ["zorgen"],
	)
	r.allowed
	some reason in r.reasons
	reason.template == "allowed_exchange"
}

test_no_row_is_no_legal_basis if {
	# Veilig Thuis holds no police records: no row lets it provide them.
	r := _share(
		"veilig_thuis", _case("acuut", "fysieke_veiligheid", false, false), "strafrechtelijke_informatie",
		"veiligheid_herstellen", ["politie"], ["incidenten"],
	)
	not r.allowed
	"no_legal_basis" in _codes(r.recipients.politie)
}

test_row_outside_its_steps_is_no_legal_basis if {
	r := _share(
		"politie", _case("acuut", "veiligheidsmaatregelen", false, false), "overdrachtsdossier", "overdracht",
		["veilig_thuis"], ["samenvatting"],
	)
	not r.allowed
	"no_legal_basis" in _codes(r.recipients.veilig_thuis)
}

test_overdrachtsdossier_in_overdracht if {
	r := _share(
		"politie", _case("acuut", "overdracht", false, false), "overdrachtsdossier", "overdracht",
		["veilig_thuis"], ["samenvatting"],
	)
	r.allowed
}

test_sharing_with_oneself_has_no_legal_basis if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["politie"], ["aard"],
	)
	not r.allowed
	"no_legal_basis" in _codes(r.recipients.politie)
}

test_deny_always_has_a_reason if {
	r := _open("om", "acuut", "fysieke_veiligheid")
	not r.allowed
	count(r.reasons) > 0
	r.legalBasis == null
}

test_the_top_level_names_every_refusal_and_allow if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["veilig_thuis", "reclassering"], ["aard"],
	)
	r.allowed
	_codes(r) == {"recipient_not_a_participant", "no_legal_basis", "allowed"}
}

# ---------------------------------------------------------------------------------------------
# Rule 2: participation in the current step
# ---------------------------------------------------------------------------------------------

test_recipient_outside_the_step_is_refused_alone if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["reclassering", "veilig_thuis"], ["aard"],
	)
	r.allowed
	r.recipients.veilig_thuis.allowed
	not r.recipients.reclassering.allowed
	_codes(r.recipients.reclassering) == {"recipient_not_a_participant", "no_legal_basis"}
}

test_sender_outside_the_step_is_refused if {
	r := _share(
		"om", _case("acuut", "fysieke_veiligheid", false, false), "justitiele_informatie",
		"veiligheid_herstellen", ["politie"], ["vervolgingsbeslissing"],
	)
	not r.allowed
	_codes(r) == {"not_a_participant"}
	"not_a_participant" in _codes(r.recipients.politie)
}

test_consulted_party_cannot_share_on_its_own if {
	r := _share(
		"reclassering", _case("acuut", "motorkapoverleg", false, false), "reclasseringsinformatie",
		"veiligheid_beoordelen", ["veilig_thuis"], ["toezicht"],
	)
	not r.allowed
	"consulted_party_cannot_share" in _codes(r.recipients.veilig_thuis)
}

test_consulted_party_may_receive_a_share if {
	r := _share(
		"politie", _case("acuut", "motorkapoverleg", false, false), "strafrechtelijke_informatie",
		"maatregelen_afstemmen", ["reclassering"], ["incidenten", "lopendeZaken"],
	)
	r.allowed
	r.recipients.reclassering.fields == ["incidenten"]
}

test_consulted_party_answers_the_asker if {
	r := _request(
		"veilig_thuis", _case("structureel", "informatie_combineren", true, false), "strafrechtelijke_informatie",
		"veiligheid_beoordelen", "politie",
	)
	r.allowed
	r.recipients.veilig_thuis.allowed
	r.recipients.veilig_thuis.fields == ["contactverbod", "incidenten", "wapenbezit"]
	r.legalBasis == "Wpg art. 19"
}

test_every_askable_party_answers_veilig_thuis_in_informatie_combineren if {
	c := _case("structureel", "informatie_combineren", true, false)
	_request("veilig_thuis", c, "justitiele_informatie", "veiligheid_beoordelen", "om").allowed
	_request("veilig_thuis", c, "reclasseringsinformatie", "veiligheid_beoordelen", "reclassering").allowed
	_request("veilig_thuis", c, "kinderbeschermingsinformatie", "veiligheid_beoordelen", "rvdk").allowed
	_request("veilig_thuis", c, "melding", "melding_behandelen", "politie").allowed
}

test_consulted_party_cannot_ask_on_its_own if {
	r := _request(
		"politie", _case("structureel", "informatie_combineren", true, false), "melding", "veiligheid_herstellen",
		"veilig_thuis",
	)
	not r.allowed
	"consulted_party_cannot_share" in _codes(r)
}

test_requester_outside_the_step_is_refused if {
	r := _request(
		"rvdk", _case("acuut", "fysieke_veiligheid", false, false), "strafrechtelijke_informatie",
		"onderzoek_kinderbescherming", "politie",
	)
	not r.allowed
	"not_a_participant" in _codes(r)
	r.recipients.rvdk.allowed == false
}

test_holder_outside_the_step_cannot_be_asked if {
	r := _request(
		"veilig_thuis", _case("acuut", "fysieke_veiligheid", false, false), "justitiele_informatie",
		"veiligheid_beoordelen", "om",
	)
	not r.allowed
	"holder_not_a_participant" in _codes(r)
}

test_holder_must_hold_the_row if {
	# Reclassering takes part in informatie_combineren but provides no police records.
	r := _request(
		"veilig_thuis", _case("structureel", "informatie_combineren", true, false), "strafrechtelijke_informatie",
		"veiligheid_beoordelen", "reclassering",
	)
	not r.allowed
	"no_legal_basis" in _codes(r.recipients.veilig_thuis)
}

test_overdracht_includes_involved_partners if {
	c := _case_involved("acuut", "overdracht", ["politie", "veilig_thuis", "om"])
	r := _share("om", c, "overdrachtsdossier", "overdracht", ["veilig_thuis"], ["samenvatting"])
	r.allowed
	not _share("reclassering", c, "overdrachtsdossier", "overdracht", ["veilig_thuis"], ["samenvatting"]).allowed
}

# ---------------------------------------------------------------------------------------------
# Rule 3: samenloop
# ---------------------------------------------------------------------------------------------

test_samenloop_applies_in_the_acute_flow_too if {
	c := _case("acuut", "veiligheidsmaatregelen", true, false)
	r := _share("veilig_thuis", c, "veiligheidsplan", "maatregelen_afstemmen", ["om", "politie"], ["doelen"])
	"samenloop_required" in _codes(r.recipients.om)
	r.recipients.politie.allowed
	_share(
		"veilig_thuis", _case("acuut", "veiligheidsmaatregelen", true, true), "veiligheidsplan",
		"maatregelen_afstemmen", ["om"], ["doelen"],
	).allowed
}

test_samenloop_does_not_restrict_other_types if {
	r := _share(
		"veilig_thuis", _case("acuut", "veiligheidsmaatregelen", false, false), "maatregel",
		"maatregelen_afstemmen", ["om", "reclassering"], ["soort"],
	)
	r.recipients.om.allowed
	r.recipients.reclassering.allowed
}

test_conditional_participant_shares_under_samenloop if {
	r := _share(
		"reclassering", _plan(true, true), "reclasseringsinformatie", "zorg_en_straf_afstemmen",
		["veilig_thuis"], ["toezicht", "adviezen"],
	)
	r.allowed
	r.recipients.veilig_thuis.fields == ["toezicht"]
	not _share(
		"reclassering", _plan(true, false), "reclasseringsinformatie", "zorg_en_straf_afstemmen",
		["veilig_thuis"], ["toezicht"],
	).allowed
}

# ---------------------------------------------------------------------------------------------
# Rule 4: purpose binding
# ---------------------------------------------------------------------------------------------

test_purpose_not_allowed_names_the_allowed_ones if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "overdracht",
		["veilig_thuis"], ["aard"],
	)
	not r.allowed
	some reason in r.recipients.veilig_thuis.reasons
	reason.template == "purpose_not_allowed"
	reason.args[4] == "melding_behandelen, veiligheid_beoordelen, veiligheid_herstellen"
}

test_allowed_purpose_binds_the_delivery if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "melding_behandelen",
		["veilig_thuis"], ["aard"],
	)
	r.allowed
	some o in r.obligations
	o == {
		"code": "usage_restriction", "recipient": "veilig_thuis", "informationType": "melding",
		"purpose": "melding_behandelen", "onwardSharing": "new_decision_required",
	}
}

test_a_step_serves_its_purposes_only if {
	# The overdracht purpose belongs to the hand-over, not to restoring physical safety.
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "overdracht",
		["veilig_thuis"], ["aard"],
	)
	not r.allowed
	_codes(r) == {"purpose_not_in_step"}
	r.reasons == {{
		"template": "purpose_not_in_step",
		"args": ["acuut", "fysieke_veiligheid", "overdracht", "melding_behandelen, veiligheid_herstellen"],
	}}
	_codes(r.recipients.veilig_thuis) == {"purpose_not_in_step", "purpose_not_allowed"}
	r.recipients.veilig_thuis.fields == []
}

test_a_request_is_bound_to_the_step_purposes_too if {
	r := _request("veilig_thuis", _case("structureel", "informatie_combineren", true, false), "strafrechtelijke_informatie", "maatregelen_afstemmen", "politie")
	not r.allowed
	"purpose_not_in_step" in _codes(r)
	_request("veilig_thuis", _case("structureel", "informatie_combineren", true, false), "strafrechtelijke_informatie", "veiligheid_beoordelen", "politie").allowed
}

_origin(purpose, type, sender) := {"messageId": "m-1", "purpose": purpose, "informationType": type, "sender": sender}

_share_on(sender, c, type, purpose, recipients, origin) := decision.decide({
	"action": "share",
	"actor": _actor(sender),
	"case": c,
	"informationType": type,
	"purpose": purpose,
	"recipients": recipients,
	"payloadFields": ["aard"],
	"origin": origin,
})

test_sharing_on_for_the_same_purpose_is_allowed if {
	r := _share_on(
		"veilig_thuis", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["politie"], [_origin("veiligheid_herstellen", "melding", "politie")],
	)
	r.allowed
}

test_sharing_on_for_a_compatible_purpose_is_allowed if {
	# A report handled by Veilig Thuis may go to the RvdK for a child-protection investigation.
	r := _share_on(
		"veilig_thuis", _case("acuut", "onderzoek", false, false), "melding", "onderzoek_kinderbescherming",
		["rvdk"], [_origin("melding_behandelen", "melding", "politie")],
	)
	r.allowed
	r.recipients.rvdk.allowed
}

test_sharing_on_for_an_incompatible_purpose_is_refused_and_says_why if {
	r := _share_on(
		"veilig_thuis", _case("acuut", "onderzoek", false, false), "onderzoeksbevindingen", "veiligheid_herstellen",
		["politie", "rvdk"], [_origin("onderzoek_strafbare_feiten", "strafrechtelijke_informatie", "politie")],
	)
	not r.allowed
	_codes(r) == {"purpose_incompatible_with_origin"}
	r.reasons == {{
		"template": "purpose_incompatible_with_origin",
		"args": [
			"veiligheid_herstellen", "onderzoek_strafbare_feiten", "veilig_thuis",
			"strafrechtelijke_informatie", "politie", "onderzoek_strafbare_feiten",
		],
	}}
	every a in ["politie", "rvdk"] {
		not r.recipients[a].allowed
		"purpose_incompatible_with_origin" in _codes(r.recipients[a])
	}
}

test_every_origin_must_be_compatible if {
	c := _case("acuut", "onderzoek", false, false)
	ok := _origin("veiligheid_herstellen", "melding", "politie")
	bad := _origin("zorg_en_straf_afstemmen", "veiligheidsplan", "veilig_thuis")
	_share_on("politie", c, "onderzoeksbevindingen", "veiligheid_beoordelen", ["veilig_thuis"], [ok]).allowed
	r := _share_on("politie", c, "onderzoeksbevindingen", "veiligheid_beoordelen", ["veilig_thuis"], [ok, bad])
	not r.allowed
	_codes(r) == {"purpose_incompatible_with_origin"}
}

test_a_malformed_origin_denies if {
	c := _case("acuut", "fysieke_veiligheid", false, false)
	r := _share_on("veilig_thuis", c, "melding", "veiligheid_herstellen", ["politie"], [{"purpose": "veiligheid_herstellen"}])
	not r.allowed
	r.reasons == {{"template": "missing_input", "args": ["origin"]}}
	not _share_on("veilig_thuis", c, "melding", "veiligheid_herstellen", ["politie"], "m-1").allowed
}

test_unknown_purpose if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "nieuwsgierigheid",
		["veilig_thuis"], ["aard"],
	)
	not r.allowed
	"unknown_purpose" in _codes(r)
}

# ---------------------------------------------------------------------------------------------
# Rule 5: minimisation
# ---------------------------------------------------------------------------------------------

test_fields_are_the_intersection if {
	r := _share(
		"veilig_thuis", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["politie"], ["aard", "melderGegevens", "nietBestaandVeld"],
	)
	r.allowed
	r.recipients.politie.fields == ["aard"]
	some o in r.obligations
	o.code == "strip_fields"
	o.removed == ["melderGegevens", "nietBestaandVeld"]
}

_voorwaarden := [
	"opgesteldOp", "voorwaarden", "voorwaardenPleger", "voorwaardenSlachtoffer", "voorwaardenKinderen",
	"afspraken", "looptijd", "toezicht", "betrokkenen", "medischeGegevensSlachtoffer",
]

test_conditions_are_minimised_per_recipient if {
	r := _share(
		"veilig_thuis", _plan(true, true), "veiligheidsvoorwaarden", "zorg_en_straf_afstemmen",
		["politie", "om", "reclassering", "rvdk"], _voorwaarden,
	)
	r.allowed

	# The reclassering supervises the pleger: the conditions that bind the pleger, nothing about the victim.
	r.recipients.reclassering.fields == ["looptijd", "opgesteldOp", "toezicht", "voorwaarden", "voorwaardenPleger"]
	r.recipients.om.fields == ["looptijd", "opgesteldOp", "toezicht", "voorwaarden", "voorwaardenPleger", "voorwaardenSlachtoffer"]
	r.recipients.rvdk.fields == [
		"afspraken", "betrokkenen", "looptijd", "opgesteldOp", "toezicht",
		"voorwaarden", "voorwaardenKinderen", "voorwaardenPleger", "voorwaardenSlachtoffer",
	]
	r.recipients.politie.fields == [
		"betrokkenen", "looptijd", "opgesteldOp", "toezicht",
		"voorwaarden", "voorwaardenKinderen", "voorwaardenPleger", "voorwaardenSlachtoffer",
	]

	# The victim's medical details reach nobody.
	every a in ["politie", "om", "reclassering", "rvdk"] {
		not "medischeGegevensSlachtoffer" in r.recipients[a].fields
	}
}

test_no_matching_field_still_allows_an_empty_delivery if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["veilig_thuis"], ["interneNotities"],
	)
	r.allowed
	r.recipients.veilig_thuis.fields == []
}

test_request_lists_the_rows_fields if {
	r := _request(
		"veilig_thuis", _case("acuut", "motorkapoverleg", false, false), "reclasseringsinformatie",
		"veiligheid_beoordelen", "reclassering",
	)
	r.allowed
	r.recipients.veilig_thuis.fields == ["bijzondereVoorwaarden", "contactpersoon", "naleving", "risicotaxatie", "toezicht"]
	some o in r.obligations
	o == {"code": "strip_fields", "recipient": "veilig_thuis", "fields": r.recipients.veilig_thuis.fields}
}

# ---------------------------------------------------------------------------------------------
# Rule 6: the RvdK only for cases with a minor
# ---------------------------------------------------------------------------------------------

test_rvdk_refused_without_a_minor if {
	c := _case_roles("acuut", "onderzoek", false, false, ["slachtoffer", "pleger"])
	r := _share("veilig_thuis", c, "kinderbeschermingsinformatie", "onderzoek_kinderbescherming", ["rvdk"], ["zorgen"])
	not r.allowed
	"no_minor_in_case" in _codes(r.recipients.rvdk)
}

test_rvdk_receives_with_a_minor if {
	c := _case("acuut", "onderzoek", false, false)
	_share("veilig_thuis", c, "kinderbeschermingsinformatie", "onderzoek_kinderbescherming", ["rvdk"], ["zorgen"]).allowed
}

test_rvdk_request_needs_a_minor_too if {
	c := _case_roles("acuut", "onderzoek", false, false, ["slachtoffer"])
	r := _request("rvdk", c, "onderzoeksbevindingen", "onderzoek_kinderbescherming", "veilig_thuis")
	not r.allowed
	"no_minor_in_case" in _codes(r.recipients.rvdk)
	_request("rvdk", _case("acuut", "onderzoek", false, false), "onderzoeksbevindingen", "onderzoek_kinderbescherming", "veilig_thuis").allowed
}

test_minor_rule_leaves_others_alone if {
	c := _case_roles("structureel", "veiligheidsplan", true, true, ["slachtoffer", "pleger"])
	r := _share("veilig_thuis", c, "veiligheidsbeoordeling", "zorg_en_straf_afstemmen", ["rvdk", "om"], ["conclusie"])
	r.allowed
	r.recipients.om.allowed
	not r.recipients.rvdk.allowed
}

# ---------------------------------------------------------------------------------------------
# Rule 7: case changes
# ---------------------------------------------------------------------------------------------

test_politie_and_veilig_thuis_open_cases if {
	_open("politie", "acuut", "fysieke_veiligheid").allowed
	_open("veilig_thuis", "structureel", "melding").allowed
	r := _open("politie", "acuut", "fysieke_veiligheid")
	r.legalBasis == "Politiewet 2012 art. 3"
	_codes(r) == {"allowed"}
}

test_others_do_not_open_cases if {
	r := _open("om", "acuut", "fysieke_veiligheid")
	not r.allowed
	"not_authorised_for_action" in _codes(r)
}

test_opener_must_take_part_in_the_opening_step if {
	r := _open("politie", "structureel", "veiligheidsbeoordeling")
	not r.allowed
	"not_a_participant" in _codes(r)
}

test_open_in_unknown_step if {
	r := _open("politie", "acuut", "melding")
	not r.allowed
	"unknown_step" in _codes(r)
}

test_step_moves_forward if {
	c := _case("acuut", "fysieke_veiligheid", false, false)
	_transition("politie", c, "acuut", "motorkapoverleg").allowed
	_transition("veilig_thuis", c, "acuut", "overdracht").allowed
}

test_step_does_not_move_back_or_stay if {
	c := _case("acuut", "onderzoek", false, false)
	r := _transition("politie", c, "acuut", "motorkapoverleg")
	not r.allowed
	_codes(r) == {"illegal_transition"}
	"illegal_transition" in _codes(_transition("politie", c, "acuut", "onderzoek"))
}

test_only_veilig_thuis_moves_structureel if {
	c := _case("structureel", "melding", false, false)
	_transition("veilig_thuis", c, "structureel", "informatie_combineren").allowed
	r := _transition("politie", c, "structureel", "informatie_combineren")
	not r.allowed
	_codes(r) == {"not_authorised_for_action"}
}

test_other_agencies_do_not_move_acuut if {
	r := _transition("om", _case("acuut", "fysieke_veiligheid", false, false), "acuut", "motorkapoverleg")
	not r.allowed
	"not_authorised_for_action" in _codes(r)
}

test_structureel_escalates_to_acuut if {
	c := _case("structureel", "veiligheidsbeoordeling", true, false)
	_transition("veilig_thuis", c, "acuut", "fysieke_veiligheid").allowed
	r := _transition("veilig_thuis", c, "acuut", "onderzoek")
	"illegal_transition" in _codes(r)
}

test_overdracht_hands_over_to_structureel if {
	c := _case("acuut", "overdracht", false, false)
	_transition("politie", c, "structureel", "melding").allowed
	not _transition("politie", _case("acuut", "onderzoek", false, false), "structureel", "melding").allowed
	not _transition("politie", c, "structureel", "veiligheidsplan").allowed
}

test_transition_to_unknown_step if {
	r := _transition("politie", _case("acuut", "onderzoek", false, false), "acuut", "nergens")
	not r.allowed
	"unknown_step" in _codes(r)
}

test_transition_flow_defaults_to_the_current_flow if {
	actor := _actor("politie")
	c := _case("acuut", "fysieke_veiligheid", false, false)
	r := decision.result with input.action as "case.transition"
		with input.actor as actor
		with input.case as c
		with input.transition as {"step": "motorkapoverleg"}
	r.allowed
}

test_tracks_have_owners if {
	c := _case("acuut", "fysieke_veiligheid", false, false)
	_track("veilig_thuis", c, "zorg", true).allowed
	_track("politie", c, "straf", true).allowed
	_track("om", c, "straf", false).allowed
	r := _track("politie", c, "zorg", true)
	not r.allowed
	"not_authorised_for_action" in _codes(r)
	not _track("veilig_thuis", c, "straf", true).allowed
	not _track("reclassering", c, "straf", true).allowed
}

test_unknown_track if {
	r := _track("veilig_thuis", _case("acuut", "fysieke_veiligheid", false, false), "civiel", true)
	not r.allowed
	"unknown_track" in _codes(r)
}

test_case_read_by_participants_and_involved if {
	c := _case_involved("acuut", "fysieke_veiligheid", ["om"])
	_read("politie", c).allowed
	_read("om", c).allowed
	r := _read("reclassering", c)
	not r.allowed
	"not_a_participant" in _codes(r)
	_read("rvdk", _case("acuut", "motorkapoverleg", false, false)).allowed
	_read("om", _plan(true, false)).allowed
}

test_rvdk_reads_only_cases_with_a_minor if {
	c := _case_roles("acuut", "onderzoek", false, false, ["slachtoffer"])
	r := _read("rvdk", c)
	not r.allowed
	"no_minor_in_case" in _codes(r)
}

# ---------------------------------------------------------------------------------------------
# Rule 8: fail closed on missing or unknown input
# ---------------------------------------------------------------------------------------------

test_empty_input_denies if {
	r := decision.decide({})
	not r.allowed
	_codes(r) == {"missing_input"}
	r.recipients == {}
}

test_missing_field_denies_and_names_it if {
	actor := _actor("politie")
	c := _case("acuut", "fysieke_veiligheid", false, false)
	r := decision.result with input.action as "share"
		with input.actor as actor
		with input.case as c
		with input.informationType as "melding"
		with input.recipients as ["veilig_thuis"]
		with input.payloadFields as ["aard"]
	not r.allowed
	r.reasons == {{"template": "missing_input", "args": ["purpose"]}}
	not r.recipients.veilig_thuis.allowed
}

test_missing_tracks_deny if {
	c := object.remove(_case("acuut", "fysieke_veiligheid", false, false), ["tracks"])
	r := _share("politie", c, "melding", "veiligheid_herstellen", ["veilig_thuis"], ["aard"])
	not r.allowed
	"missing_input" in _codes(r)
}

test_wrong_type_denies if {
	c := object.union(_case("acuut", "fysieke_veiligheid", false, false), {"tracks": {"zorg": "ja", "straf": false}})
	r := _share("politie", c, "melding", "veiligheid_herstellen", ["veilig_thuis"], ["aard"])
	not r.allowed
	"missing_input" in _codes(r)
}

test_no_recipients_denies if {
	r := _share("politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen", [], ["aard"])
	not r.allowed
	"missing_input" in _codes(r)
}

test_missing_holder_denies if {
	actor := _actor("veilig_thuis")
	c := _case("structureel", "informatie_combineren", true, false)
	r := decision.result with input.action as "request"
		with input.actor as actor
		with input.case as c
		with input.informationType as "melding"
		with input.purpose as "melding_behandelen"
	not r.allowed
	"missing_input" in _codes(r)
}

test_missing_track_open_denies if {
	actor := _actor("politie")
	r := decision.result with input.action as "case.track"
		with input.actor as actor
		with input.track as {"name": "straf"}
	not r.allowed
	"missing_input" in _codes(r)
}

test_unknown_action if {
	actor := _actor("politie")
	r := decision.result with input.action as "case.delete" with input.actor as actor
	not r.allowed
	"unknown_action" in _codes(r)
}

test_unknown_agency if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["interpol", "veilig_thuis"], ["aard"],
	)
	"unknown_agency" in _codes(r.recipients.interpol)
	r.recipients.veilig_thuis.allowed
	not _share(
		"burgemeester", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen",
		["veilig_thuis"], ["aard"],
	).allowed
}

test_unknown_information_type if {
	r := _share(
		"politie", _case("acuut", "fysieke_veiligheid", false, false), "geheim", "veiligheid_herstellen",
		["veilig_thuis"], ["aard"],
	)
	not r.allowed
	"unknown_information_type" in _codes(r)
}

test_unknown_step_of_the_case if {
	r := _share("politie", _case("acuut", "nergens", false, false), "melding", "veiligheid_herstellen", ["veilig_thuis"], ["aard"])
	not r.allowed
	"unknown_step" in _codes(r)
}

test_quotes_in_input_are_harmless if {
	r := _share("politie", _case("acuut", "fysieke_veiligheid", false, false), "melding", "veiligheid_herstellen", ["x\"y"], ["aard"])
	not r.allowed
	"unknown_agency" in _codes(r.recipients["x\"y"])
}

# ---------------------------------------------------------------------------------------------
# data.json is consistent
# ---------------------------------------------------------------------------------------------

_facts := data.veiligdelen.facts

# Consistency checks collect violations, so a failure names them. (regopy 1.5.2 neither parses
# `some k, v in` inside a set or array comprehension nor handles a nested `every` that reads an
# outer variable; partial rules avoid both.)
_step_gaps contains [name, step] if {
	some name, flow in _facts.flows
	some step in flow.order
	not step in object.keys(flow.steps)
}

_step_gaps contains [name, "order and steps differ in length"] if {
	some name, flow in _facts.flows
	count(flow.order) != count(flow.steps)
}

test_every_step_in_order_is_described if {
	count(_step_gaps) == 0
}

_named_agencies contains a if {
	some flow in _facts.flows
	some step in flow.steps
	some a in array.concat(array.concat(step.core, step.consulted), step.conditional)
}

_named_agencies contains a if {
	some flow in _facts.flows
	some a in flow.movers
}

_named_agencies contains a if {
	some track in _facts.tracks
	some a in track.owners
}

_named_agencies contains a if some a in _facts.caseOpeners

test_participants_movers_and_owners_are_agencies if {
	count(_named_agencies - {a | some a in object.keys(_facts.agencies)}) == 0
}

_grant_problems contains [type, receiver, sender, "unknown information type"] if {
	some type, receivers in _facts.grants
	some receiver, senders in receivers
	some sender, _ in senders
	not type in object.keys(_facts.informationTypes)
}

_grant_problems contains [type, receiver, sender, "unknown agency"] if {
	some type, receivers in _facts.grants
	some receiver, senders in receivers
	some sender, _ in senders
	some a in [receiver, sender]
	not a in object.keys(_facts.agencies)
}

_grant_problems contains [type, receiver, sender, "sender is receiver"] if {
	some type, receivers in _facts.grants
	some receiver, senders in receivers
	some sender, _ in senders
	sender == receiver
}

_grant_problems contains [type, receiver, sender, "no legal basis, verified flag or purpose"] if {
	some type, receivers in _facts.grants
	some receiver, senders in receivers
	some sender, g in senders
	not _complete(g)
}

_grant_problems contains [type, receiver, sender, p] if {
	some type, receivers in _facts.grants
	some receiver, senders in receivers
	some sender, g in senders
	some p in g.purposes
	not p in object.keys(_facts.purposes)
}

_grant_problems contains [type, receiver, sender, f] if {
	some type, receivers in _facts.grants
	some receiver, senders in receivers
	some sender, g in senders
	some f in g.fields
	not startswith(f, "bsn:")
	not f in _facts.informationTypes[type].fields
}

# An identity a row passes (bsn:<role>) is one the receiver's task covers (facts.identities).
_grant_problems contains [type, receiver, sender, f] if {
	some type, receivers in _facts.grants
	some receiver, senders in receivers
	some sender, g in senders
	some f in g.fields
	startswith(f, "bsn:")
	not substring(f, 4, -1) in _facts.identities.receivers[receiver].roles
}

# A row's retention term (days a delivered message may wait for its recipient) is a whole number > 0.
_grant_problems contains [type, receiver, sender, "retentionDays"] if {
	some type, receivers in _facts.grants
	some receiver, senders in receivers
	some sender, g in senders
	not _positive_days(object.get(g, "retentionDays", _facts.retention.defaultMessageDays))
}

_positive_days(d) if {
	is_number(d)
	d >= 1
	d == round(d)
}

test_retention_terms_are_whole_days if {
	_positive_days(_facts.retention.defaultMessageDays)
	_positive_days(_facts.retention.caseIdentitiesDays)
}

# A share delivers the identities a row names of the case's subjects, and no other; a request none.
_identity_case := {"flow": "acuut", "step": "onderzoek", "tracks": {"zorg": true, "straf": true}, "subjectRoles": ["kind", "pleger", "slachtoffer"], "involved": ["politie", "veilig_thuis", "rvdk"]}

test_share_delivers_the_identities_the_row_names if {
	d := decision.decide({
		"action": "share",
		"actor": {"agency": "veilig_thuis", "clientId": "t", "role": "agency_system"},
		"case": _identity_case,
		"informationType": "melding",
		"purpose": "onderzoek_kinderbescherming",
		"recipients": ["rvdk"],
		"payloadFields": ["aard", "bsn:kind", "bsn:pleger", "bsn:slachtoffer"],
	})
	d.recipients.rvdk.fields == ["aard", "bsn:kind"]
}

test_request_answers_carry_no_identities if {
	d := decision.decide({
		"action": "request",
		"actor": {"agency": "rvdk", "clientId": "t", "role": "agency_system"},
		"case": _identity_case,
		"informationType": "melding",
		"purpose": "onderzoek_kinderbescherming",
		"holder": "veilig_thuis",
	})
	d.recipients.rvdk.allowed
	count([f | some f in d.recipients.rvdk.fields; startswith(f, "bsn:")]) == 0
}

_complete(g) if {
	is_string(g.legalBasis)
	g.legalBasis != ""
	is_boolean(g.verified)
	count(g.purposes) > 0
}

test_every_grant_is_complete if {
	count(_grant_problems) == 0
}

_step_purpose_problems contains [name, step, p] if {
	some name, flow in _facts.flows
	some step, s in flow.steps
	some p in s.purposes
	not p in object.keys(_facts.purposes)
}

_step_purpose_problems contains [name, step, "no purposes"] if {
	some name, flow in _facts.flows
	some step, s in flow.steps
	not is_array(s.purposes)
}

_step_purpose_problems contains [name, step, "no purposes"] if {
	some name, flow in _facts.flows
	some step, s in flow.steps
	count(s.purposes) == 0
}

test_every_step_names_the_purposes_it_serves if {
	count(_step_purpose_problems) == 0
}

_compatible_problems contains [origin, "unknown purpose"] if {
	some origin, _ in _facts.compatiblePurposes
	not origin in object.keys(_facts.purposes)
}

_compatible_problems contains [origin, p] if {
	some origin, c in _facts.compatiblePurposes
	some p in c.purposes
	not p in object.keys(_facts.purposes)
}

_compatible_problems contains [origin, "missing"] if {
	some origin, _ in _facts.purposes
	not origin in object.keys(_facts.compatiblePurposes)
}

test_compatible_purposes_name_known_purposes_and_cover_all if {
	count(_compatible_problems) == 0
}

test_every_message_has_a_ranked_code_and_both_languages if {
	every m in _facts.messages {
		is_number(_facts.reasonCodes[m.code].rank)
		is_string(m.message)
		is_string(m.messageNl)
	}
}

test_the_demo_rows_exist if {
	every a in ["om", "reclassering", "rvdk"] {
		"zorg_en_straf_afstemmen" in _facts.grants.veiligheidsbeoordeling[a].veilig_thuis.purposes
	}
}
