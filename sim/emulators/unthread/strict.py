"""Strict mode: the emulator offers only what the facts file CONFIRMS, so a rehearsal cannot lean
on the permissive emulator's guesses.

Selected with `create_app(strict=True)`, the CLI's `--strict`, or the environment variable
`UNTHREAD_EMULATOR_STRICT=1` (read when `strict` is not given). `GET /_emulator/mode` answers
`{"mode": "strict"|"permissive"}` in both modes; in strict mode `/_emulator/health` says it too.

Deviations from permissive mode (sections of /work/shared/vendor-apis/unthread-api.md):
1. Tags (§4.4, §9: tag create/list/attach UNCONFIRMED): no `/tags`, `/tags/list`, `/tags/{id}`
   routes (404 like any unknown route); `tags` in a conversation create (§3.1) or PATCH (§3.3)
   body is refused with 400 `unknown field: tags`. Conversations still carry `tags: []` and
   `tags.*` stays selectable: the object has tags (§3.2, [TW] and the [DOC] select example).
2. File read-back (§5.2 lists no `files` on messages; §6 shows the download path only for files
   met through webhooks, with 404/409/425 while not ready): no
   `GET /conversations/{id}/files/{id}/full` route, so it answers 404. Uploads (§6) are still
   accepted and stored, and the message's `files` list is still returned.
3. Users (§4.3: items have at least `id` and `email` [PD]; [TW] adds name): `POST /users/list`
   accepts only `id` and `email` in `select`, `where` and `order` (anything else, such as
   `order: ["createdAt", "id"]`, is 400 `... unknown field ...`); rows carry `id`, `name`, `email`;
   the default order is `["id"]` (a user's createdAt is not documented). `GET /users/{id}` is
   gone: §4.3 names only the list endpoint.
4. Message authors (§5.2, §9; the create response shape is UNCONFIRMED, §5.1): `onBehalfOf` is
   accepted on create, but stored and returned messages (message list, create response and a
   conversation's `initialMessage`) have `user: null`, `userId: null`, and no `sentByUser` or
   `onBehalfOf` key: no source shows how the real read-back names an on-behalf-of author.
5. `isPrivateNote` on message create (§5.1, §9: UNCONFIRMED) is accepted but ignored; messages
   read back with `isPrivateNote: false`.
6. `DELETE /conversations/{id}` (§3.5: path UNCONFIRMED) has no route: 405, since the path
   answers other methods. `DELETE /customers/{id}` stays (§4.1, [PD]).
7. `ticketTypeId` and `ticketTypeFields` on conversation create (§3.1, §9: UNCONFIRMED on create)
   are refused with 400 `unknown field: <name>`, like `tags`; `ticketTypeFields` on PATCH stays
   (§3.3, [NX]). `metadata` on create and PATCH stays accepted and kept, and list `where` on
   `metadata.*` (conversations) and `externalCrmMetadata.id` (customers) stays: the pipeline
   probes them and must find out on a real workspace, not here.
8. Everything else is as in permissive mode: auth, the 100-per-page clamp, keyset cursors,
   statuses, multipart uploads, limits, faults, admin routes, and the INFERRED `/accounts` paths
   (§4.2).
"""

from __future__ import annotations

import os
from typing import Any

from .errors import ApiError
from .schema import Field, Resource

STRICT_ENV = "UNTHREAD_EMULATOR_STRICT"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")

# (path under /api, method) of the routes strict mode does not serve.
UNCONFIRMED_ROUTES = frozenset(
    {
        ("/tags", "POST"),
        ("/tags/list", "POST"),
        ("/tags/{id}", "GET"),
        ("/users/{id}", "GET"),
        ("/conversations/{id}", "DELETE"),
        ("/conversations/{conversation_id}/files/{file_id}/full", "GET"),
    }
)
CONVERSATION_CREATE_REFUSED = ("tags", "ticketTypeId", "ticketTypeFields")
CONVERSATION_PATCH_REFUSED = ("tags",)

# The users a strict list may select, filter and order on (facts §4.3), and what a row carries.
STRICT_USERS = Resource("users", {"id": Field(column="id", nonnull=True), "email": Field()})
USER_ROW_FIELDS = ("id", "name", "email")
USERS_DEFAULT_ORDER = ["id"]


def strict_from(strict: bool | None) -> bool:
    """The mode: the explicit argument, else the environment variable, else permissive."""
    if strict is not None:
        return strict
    raw = os.environ.get(STRICT_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{STRICT_ENV} must be one of {', '.join(_TRUE + _FALSE[1:])}, got {raw!r}")


def refuse_unknown(payload: dict[str, Any], names: tuple[str, ...]) -> None:
    """400 on the first unconfirmed field the body sends (even as null or [])."""
    for name in names:
        if name in payload:
            raise ApiError(400, f"unknown field: {name}")


def users_list_body(body: dict[str, Any]) -> dict[str, Any]:
    """Default the order to `["id"]`: the permissive default (`createdAt`) is not a user field here."""
    if body.get("order") in (None, []):
        return {**body, "order": USERS_DEFAULT_ORDER}
    return body


def user_row(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in USER_ROW_FIELDS}


def message_view(message: dict[str, Any]) -> dict[str, Any]:
    """A message as strict mode stores and shows it: no author, never a private note. Also applied
    on read so a state file written in permissive mode reads the same way."""
    out = {k: v for k, v in message.items() if k not in ("sentByUser", "onBehalfOf")}
    out.update(user=None, userId=None, isPrivateNote=False)
    return out


def conversation_view(conversation: dict[str, Any]) -> dict[str, Any]:
    initial = conversation.get("initialMessage")
    if not isinstance(initial, dict):
        return conversation
    return {**conversation, "initialMessage": message_view(initial)}


VIEWS = {"messages": message_view, "conversations": conversation_view, "users": user_row}
