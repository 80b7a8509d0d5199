"""Pure tests of the Gladly export-line parser."""

from datetime import UTC, datetime

import pytest

from migration_pipeline.vendors.gladly.parse import RecordError, parse_agent, parse_customer, parse_item, parse_topic

EMAIL_LINE = {
    "id": "item-1",
    "customerId": "cust-1",
    "conversationId": "conv-1",
    "timestamp": "2019-07-01T11:46:45.010Z",
    "initiator": {"id": "cust-1", "type": "CUSTOMER"},
    "content": {
        "type": "EMAIL",
        "from": "a@b.com",
        "to": ["support@acme.com"],
        "subject": "Order late",
        "content": "Where is my order?",
        "attachments": [{"id": "att-1", "contentType": "image/png", "filename": "x.png", "fileSize": 12}],
    },
}


def test_email_line_maps_to_canonical_item():
    item = parse_item(EMAIL_LINE)
    assert item.source_id == "item-1" and item.customer_id == "cust-1" and item.conversation_id == "conv-1"
    assert item.timestamp == datetime(2019, 7, 1, 11, 46, 45, 10000, tzinfo=UTC)
    assert (item.kind, item.visibility, item.source_kind, item.source_system) == ("message", "public", "EMAIL", "gladly")
    assert (item.author_type, item.author_id, item.channel) == ("customer", "cust-1", "email")
    assert item.subject == "Order late" and item.text == "Where is my order?" and item.html is None
    assert item.attachments[0].source_id == "att-1" and item.attachments[0].size == 12
    assert item.envelope.as_json() == {"from": "a@b.com", "to": ["support@acme.com"], "cc": [], "bcc": []}


@pytest.mark.parametrize(
    ("content", "kind", "visibility", "channel"),
    [
        ({"type": "CHAT_MESSAGE", "content": "hi"}, "message", "public", "chat"),
        ({"type": "SMS", "content": "hi"}, "message", "public", "sms"),
        ({"type": "WHATSAPP", "content": "hi"}, "message", "public", "social"),
        ({"type": "CONVERSATION_NOTE", "body": "internal"}, "note", "private", "note"),
        ({"type": "PHONE_CALL", "from": "+1555"}, "call", "private", "phone"),
        ({"type": "VOICEMAIL"}, "call", "private", "phone"),
        ({"type": "CUSTOMER_ACTIVITY", "title": "Order shipped"}, "activity", "public", "activity"),
        ({"type": "CONVERSATION_STATUS_CHANGE", "status": "closed"}, "status_change", "public", "system"),
        ({"type": "TOPIC_CHANGE", "addedTopicIds": ["t1"]}, "tag_change", "public", "system"),
    ],
)
def test_each_gladly_type_maps_to_its_canonical_kind_and_visibility(content, kind, visibility, channel):
    item = parse_item(dict(EMAIL_LINE, content=content))
    assert (item.kind, item.visibility, item.channel, item.source_kind) == (kind, visibility, channel, content["type"])
    assert item.envelope.as_json() is None  # only emails carry one


def test_changes_carry_what_they_changed():
    status = parse_item(dict(EMAIL_LINE, content={"type": "CONVERSATION_STATUS_CHANGE", "status": "waiting"}))
    assert status.status_change == "WAITING" and status.tags_added == ()
    topics = parse_item(dict(EMAIL_LINE, content={"type": "TOPIC_CHANGE", "addedTopicIds": ["t1", None], "removedTopicIds": ["t2"]}))
    assert (topics.status_change, topics.tags_added, topics.tags_removed) == (None, ("t1",), ("t2",))


def test_calls_and_activities_are_rendered_at_staging_so_no_target_reads_the_record():
    call = parse_item(dict(EMAIL_LINE, content={"type": "PHONE_CALL", "from": "+15550100", "to": "+15550199", "recordingStatus": "AVAILABLE"}))
    assert "Phone call" in call.text and "+15550100" in call.text and call.html is None and call.transcript_expected
    gone = parse_item(dict(EMAIL_LINE, content={"type": "PHONE_CALL", "recordingStatus": "DELETED"}))
    assert not gone.transcript_expected
    activity = parse_item(dict(EMAIL_LINE, content={"type": "CUSTOMER_ACTIVITY", "title": "Order shipped", "body": "Parcel 7"}))
    assert "**Order shipped**" in activity.text and "Parcel 7" in activity.text


def test_chat_quick_replies_list_their_options_and_a_bodiless_message_describes_itself():
    request = {"type": "CHAT_MESSAGE", "content": "Pick one", "messageType": "QUICK_REPLY_REQUEST",
               "messageData": {"options": [{"label": "Yes"}, {"label": "No"}]}}
    assert parse_item(dict(EMAIL_LINE, content=request)).text == "Pick one\n\nOptions: `Yes` · `No`"
    html = parse_item(dict(EMAIL_LINE, content={**request, "content": "<p>Pick one</p>"}))
    assert html.html == "<p>Pick one</p><p>Options: `Yes` · `No`</p>"
    bare = parse_item(dict(EMAIL_LINE, content={"type": "CHAT_MESSAGE", "messageType": "TEXT"}))
    assert bare.text == "messageType: TEXT"


def test_nanosecond_timestamps_and_offsets_become_utc():
    line = dict(EMAIL_LINE, timestamp="2019-02-21T09:15:19.07272933+02:00")
    assert parse_item(line).timestamp == datetime(2019, 2, 21, 7, 15, 19, 72729, tzinfo=UTC)


def test_html_bodies_are_recognised():
    line = dict(EMAIL_LINE, content={"type": "CONVERSATION_NOTE", "body": "<div><p>Internal</p></div>"})
    item = parse_item(line)
    assert item.html == "<div><p>Internal</p></div>" and item.text is None and item.channel == "note"


def test_unknown_content_type_is_kept_verbatim():
    item = parse_item(dict(EMAIL_LINE, content={"type": "VIDEO_CALL", "duration": 3}))
    assert (item.kind, item.source_kind, item.channel) == ("other", "VIDEO_CALL", None)
    assert "`VIDEO_CALL`" in item.text and "duration: 3" in item.text and item.payload["content"]["duration"] == 3


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None}, "has no id"),
        ({"customerId": ""}, "has no customerId"),
        ({"timestamp": "yesterday"}, "not RFC3339"),
        ({"timestamp": "2019-07-01T11:46:45"}, "no timezone"),
        ({"content": "EMAIL"}, "no content object"),
        ({"content": {"body": "x"}}, "no content.type"),
        ({"content": {"type": "EMAIL", "attachments": "x"}}, "attachments is not a list"),
        ({"conversationId": 7}, "non-string conversationId"),
    ],
)
def test_bad_records_name_the_reason(change, reason):
    with pytest.raises(RecordError, match=reason):
        parse_item({**EMAIL_LINE, **change})


def test_customer_from_export_and_rest_shapes():
    export = parse_customer(
        {"id": "c1", "name": "Martha", "emailAddresses": ["Martha.Williams@gmail.com"], "phoneNumbers": ["+17244895501"]}
    )
    rest = parse_customer(
        {
            "id": "c1",
            "emails": [{"original": "Martha.Williams@gmail.com", "normalized": "martha.williams@gmail.com"}],
            "phones": [{"original": "724 489 5501", "normalized": "+17244895501"}],
            "customAttributes": {"tier": "gold"},
            "externalCustomerId": "X1",
        }
    )
    assert export.emails == rest.emails == ("Martha.Williams@gmail.com",)
    assert export.phones == rest.phones == ("+17244895501",)
    assert rest.custom_attributes == {"tier": "gold"} and rest.external_ids == {"externalCustomerId": "X1"}


def test_agents_and_topics():
    assert parse_agent({"id": "a1", "name": "Amy", "emailAddress": "amy@x.com"}).email == "amy@x.com"
    topic = parse_topic({"id": "t2", "name": "Billing/Refunds", "disabled": True, "parentId": "t1"})
    assert topic.parent_id == "t1" and topic.disabled
    with pytest.raises(RecordError):
        parse_topic({"id": "t3"})
