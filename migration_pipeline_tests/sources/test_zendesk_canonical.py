"""Zendesk records -> the canonical contract (vendors/zendesk/canonical.py): the choices the facts
leave open, one test each."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migration_pipeline.vendors.zendesk import canonical
from migration_pipeline.vendors.zendesk.records import RecordError, ZendeskComment, ZendeskTicket, ZendeskUser

TICKET = ZendeskTicket.model_validate({
    "id": 35436, "subject": "Help, my printer is on fire!", "status": "Pending", "requester_id": 20, "assignee_id": 30,
    "tags": ["printer", "urgent"], "created_at": "2024-05-01T09:00:00+02:00",
    "via": {"channel": "email", "source": {"from": {"address": "ann@example.com", "name": "Ann"}, "to": {"address": "help@acme.com"}}},
})
ROLES = {20: "end-user", 30: "agent", 40: "admin", 50: "end-user"}


def _comment(**over) -> ZendeskComment:
    return ZendeskComment.model_validate({"id": 1, "author_id": 20, "public": True, "html_body": "<p>Fire!</p>",
                                          "plain_body": "Fire!", "created_at": "2024-05-01T07:00:00Z", **over})


def test_a_ticket_is_a_conversation_with_status_tags_assignee_and_sender():
    c = canonical.conversation(TICKET)
    assert (c.source_system, c.source_id, c.customer_id, c.assignee_id) == ("zendesk", "35436", "20", "30")
    assert (c.status, c.channel, c.tags) == ("pending", "email", ("printer", "urgent"))
    assert c.created_at == datetime(2024, 5, 1, 7, tzinfo=UTC) and c.envelope.sender == "ann@example.com"


@pytest.mark.parametrize(
    ("over", "kind", "visibility", "author_type"),
    [
        ({}, "message", "public", "customer"),
        ({"public": False, "author_id": 30}, "note", "private", "agent"),
        ({"public": None, "author_id": 40}, "note", "private", "agent"),  # not said: never shown to the customer
        ({"type": "VoiceComment", "author_id": 30}, "call", "public", "agent"),
        ({"author_id": 50}, "message", "public", "customer"),  # a CC'd end user
        ({"author_id": 99}, "message", "public", "external"),  # a user the export does not hold
        ({"author_id": -1}, "message", "public", "system"),
    ],
)
def test_each_comment_maps_to_its_kind_visibility_and_author(over, kind, visibility, author_type):
    item = canonical.item(TICKET, _comment(**over), ROLES)
    assert (item.kind, item.visibility, item.author_type) == (kind, visibility, author_type)
    assert (item.conversation_id, item.customer_id, item.subject) == ("35436", "20", TICKET.subject)


def test_bodies_attachments_and_channel():
    item = canonical.item(TICKET, _comment(attachments=[{"id": 7, "file_name": "fire.jpg", "content_type": "image/jpeg",
                                                        "size": 12, "content_url": "https://acme.zendesk.com/a/7"}]), ROLES)
    assert (item.html, item.text, item.channel, item.source_kind) == ("<p>Fire!</p>", "Fire!", "email", "Comment")
    assert item.attachments[0].url == "https://acme.zendesk.com/a/7" and item.attachments[0].filename == "fire.jpg"
    call = canonical.item(TICKET, _comment(type="VoiceComment", html_body="<p>Call</p>", plain_body="Call from +1555"), ROLES)
    assert (call.channel, call.html, call.text) == ("phone", None, "Call from +1555")


def test_records_the_contract_cannot_hold_name_the_reason():
    with pytest.raises(RecordError, match="ticket 35436 comment 1 has no created_at"):
        canonical.item(TICKET, _comment(created_at=None), ROLES)
    orphan = TICKET.model_copy(update={"requester_id": None})
    with pytest.raises(RecordError, match="ticket 35436 has no requester_id"):
        canonical.conversation(orphan)


def test_users_split_into_customers_and_agents():
    ann = ZendeskUser.model_validate({"id": 20, "name": "Ann", "email": " ann@example.com ", "phone": "+1555", "role": "end-user"})
    amy = ZendeskUser.model_validate({"id": 30, "name": "Amy", "email": "amy@acme.com", "role": "agent", "active": False})
    assert not canonical.is_agent(ann) and canonical.is_agent(amy)
    assert canonical.customer(ann).emails == ("ann@example.com",) and canonical.customer(ann).phones == ("+1555",)
    assert canonical.agent(amy).active is False and canonical.agent(amy).email == "amy@acme.com"
