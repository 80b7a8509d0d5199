"""The shape of each Unthread resource as the emulator stores and queries it.

Every resource lives in its own SQLite table holding the whole object as a JSON document plus a few
real columns (`id`, `parent_id`, `created_at`, `updated_at`) that back the common indexes. The field
specs below say, for each documented field, how a list request may use it:

- SCALAR fields can be selected, filtered and ordered on;
- OBJECT fields (free-form maps such as `metadata`) also accept dotted paths (`metadata.gladlyId`);
- ARRAY fields (lists of scalars) accept `contains` / `notContains`;
- OBJECT_ARRAY fields (`tags`, `files`) accept dotted paths into their elements (`tags.name`);
- RELATION fields are not stored but joined from another resource by a key field
  (`customer` from `customerId`); dotted paths into them select, filter and order.

Field lists come from the facts file (/work/shared/vendor-apis/unthread-api.md §3-§6). A field that
is documented but the emulator has no behaviour for is still stored (as null) so a real client's
`select` does not fail here when it would work against Unthread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    SCALAR = "scalar"
    OBJECT = "object"
    ARRAY = "array"
    OBJECT_ARRAY = "object_array"
    RELATION = "relation"


@dataclass(frozen=True)
class Field:
    kind: Kind = Kind.SCALAR
    column: str | None = None  # a real table column instead of a JSON path
    nonnull: bool = False  # never null: lets keyset pagination use an index-friendly row comparison
    relation: tuple[str, str] | None = None  # (target resource, local key field)
    hydrate_by_default: bool = True  # relations only: joined into full objects, not just when selected


@dataclass(frozen=True)
class Resource:
    name: str  # also the table name
    fields: dict[str, Field]
    json_indexes: tuple[tuple[str, ...], ...] = field(default_factory=tuple)  # extra composite indexes

    def relations(self) -> dict[str, Field]:
        return {name: f for name, f in self.fields.items() if f.kind is Kind.RELATION}


S = Field()
OBJ = Field(Kind.OBJECT)
ARR = Field(Kind.ARRAY)
OARR = Field(Kind.OBJECT_ARRAY)
ID = Field(column="id", nonnull=True)
CREATED = Field(column="created_at", nonnull=True)
UPDATED = Field(column="updated_at", nonnull=True)
NAME = Field(nonnull=True)


def _fields(names: str, spec: Field = S) -> dict[str, Field]:
    return {n: spec for n in names.split()}


CUSTOMERS = Resource(
    "customers",
    {
        "id": ID,
        "name": NAME,
        "createdAt": CREATED,
        "updatedAt": UPDATED,
        **_fields(
            "slackChannelId triageChannelId defaultTriageChannelId disableAutomatedTicketing slackTeamId "
            "primarySupportAssigneeId primarySupportAssigneeType secondarySupportAssigneeId "
            "secondarySupportAssigneeType replyTimeoutMinutes botHandling assignToTaggedUserEnabled"
        ),
        **_fields("slackChannel externalCrmMetadata autoresponder", OBJ),
        "emailDomains": ARR,
        **_fields("tags supportSteps", OARR),
    },
)

ACCOUNTS = Resource(
    "accounts",
    {
        "id": ID,
        "name": NAME,
        "createdAt": CREATED,
        "updatedAt": UPDATED,
        **_fields(
            "imageUrl primarySupportAssigneeId primarySupportAssigneeType secondarySupportAssigneeId "
            "secondarySupportAssigneeType createdBy updatedBy"
        ),
        **_fields("emailsAndDomains slackChannelIds slackTeamIds", ARR),
        **_fields("customFields supportSteps slackChannels slackTeams tags", OARR),
        "externalCrmMetadata": OBJ,
        "primarySupportAssignee": Field(Kind.RELATION, relation=("users", "primarySupportAssigneeId")),
        "secondarySupportAssignee": Field(Kind.RELATION, relation=("users", "secondarySupportAssigneeId")),
    },
)

# assumed: users carry createdAt/updatedAt (the seed time) so the default list order works for them.
USERS = Resource(
    "users",
    {"id": ID, "name": S, "email": S, "slackId": S, "photo": S, "createdAt": CREATED, "updatedAt": UPDATED},
)

TAGS = Resource("tags", {"id": ID, "name": NAME, "createdAt": CREATED, "updatedAt": UPDATED})

CONVERSATIONS = Resource(
    "conversations",
    {
        "id": ID,
        "friendlyId": Field(nonnull=True),
        "createdAt": CREATED,
        "updatedAt": UPDATED,
        **_fields(
            "status title priority customerId channelId triageChannelId emailInboxId sourceType "
            "wasManuallyCreated closedAt statusUpdatedAt wakeUpAt snoozedAt lockedAt responseTime "
            "responseTimeWorking resolutionTime resolutionTimeWorking waitingOnAgentTime "
            "waitingOnCustomerTime initialMessageId assignedToUserId ticketTypeId summary sentiment "
            "titleOverwritten notes excludeAnalytics"
        ),
        **_fields("initialMessage ticketTypeFields metadata onBehalfOf ticketType submitterUser", OBJ),
        "resolvedTitle": ARR,
        **_fields("tags followers collaborators", OARR),
        "customer": Field(Kind.RELATION, relation=("customers", "customerId")),
        "assignedToUser": Field(Kind.RELATION, relation=("users", "assignedToUserId")),
    },
    json_indexes=(("customerId", "createdAt", "id"), ("friendlyId",), ("status", "createdAt", "id")),
)

MESSAGES = Resource(
    "messages",
    {
        "id": ID,
        "conversationId": Field(column="parent_id", nonnull=True),
        "createdAt": CREATED,
        "updatedAt": UPDATED,
        "ts": Field(nonnull=True),
        **_fields(
            "threadTs timestamp text htmlContent subtype botId botName userId userTeamId isPrivateNote"
        ),
        **_fields("user sentByUser metadata onBehalfOf", OBJ),
        "resolvedContent": ARR,
        "files": OARR,
        # Joined only when selected: embedding the conversation in each of a page's messages is heavy.
        "conversation": Field(Kind.RELATION, relation=("conversations", "conversationId"), hydrate_by_default=False),
    },
    json_indexes=(("conversationId", "ts", "id"), ("conversationId", "createdAt", "id")),
)

RESOURCES: dict[str, Resource] = {r.name: r for r in (CUSTOMERS, ACCOUNTS, USERS, TAGS, CONVERSATIONS, MESSAGES)}
