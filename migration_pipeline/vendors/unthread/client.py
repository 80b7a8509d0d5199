"""Unthread REST client. No Dagster import.

Facts it relies on are in `shared/vendor-apis/unthread-api.md`: `X-Api-Key` auth, JSON in and
out, lists as `POST /<resource>/list` with keyset cursors (`{data, totalCount, cursors}`, at
most 100 a page), conversations created with an initial markdown message, messages in the
`{body:{type:"markdown",value}}` form. Rate limits and the error body shape are undocumented,
so the client paces itself conservatively, retries 429/5xx with backoff, honours `Retry-After`
if one is sent, and reads `error`/`message` from error bodies when present.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

import httpx

from migration_pipeline.lib.http import VendorHttpClient
from migration_pipeline.lib.http import path_segment as _seg

PAGE_LIMIT = 100
Upload = tuple[str, bytes | IO[bytes], str]  # (file name, content or an open binary file, mime type)


def _body(payload: dict[str, Any], files: list[Upload] | None) -> dict[str, Any]:
    """JSON, or Unthread's multipart form: the payload as a `json` part plus `attachments` parts."""
    if not files:
        return {"json": payload}
    return {"data": {"json": json.dumps(payload)}, "files": [("attachments", f) for f in files]}


class UnthreadClient(VendorHttpClient):
    vendor = "unthread"

    def __init__(self, base_url: str, api_key: str, *, requests_per_second: float = 20.0, **kwargs: Any):
        super().__init__(
            base_url,
            headers={"X-Api-Key": api_key, "Accept": "application/json"},
            requests_per_second=requests_per_second,
            **kwargs,
        )

    def error_detail(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text[:300]
        if isinstance(body, dict):
            for key in ("error", "message", "detail"):
                if isinstance(body.get(key), str):
                    return body[key]
        return response.text[:300]

    # -- lists: pagination in one place ------------------------------------------------------
    def iter_list(self, path: str, body: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a list endpoint, following `cursors.next` while `hasNext`."""
        request = {"limit": PAGE_LIMIT, **(body or {})}
        while True:
            page = self.request("POST", path, json=request).json()
            yield from page.get("data", [])
            cursors = page.get("cursors") or {}
            if not cursors.get("hasNext") or not cursors.get("next"):
                return
            request = {**request, "cursor": cursors["next"]}

    def count(self, path: str, where: list[dict[str, Any]] | None = None) -> int:
        page = self.request("POST", path, json={"limit": 1, "where": where or [], "select": ["id"]}).json()
        return int(page.get("totalCount", 0))

    def find_one(self, path: str, field: str, value: Any) -> dict[str, Any] | None:
        page = self.request("POST", path, json={"limit": 1, "where": [{"field": field, "operator": "==", "value": value}]})
        data = page.json().get("data") or []
        return data[0] if data else None

    # -- objects -----------------------------------------------------------------------------
    def list_users(self) -> list[dict[str, Any]]:
        # Only `id` and `email` are confirmed user fields (facts §4.3): order by id, nothing else.
        return list(self.iter_list("/users/list", {"order": ["id"]}))

    def create_customer(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/customers", json=payload, idempotent=False).json()

    def create_conversation(self, payload: dict[str, Any], files: list[Upload] | None = None) -> dict[str, Any]:
        return self.request("POST", "/conversations", idempotent=False, **_body(payload, files)).json()

    def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/conversations/{_seg(conversation_id)}", ok=(404,))
        return None if response.status_code == 404 else response.json()

    def patch_conversation(self, conversation_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", f"/conversations/{_seg(conversation_id)}", json=payload).json()

    def create_message(
        self, conversation_id: str, payload: dict[str, Any], files: list[Upload] | None = None
    ) -> dict[str, Any]:
        path = f"/conversations/{_seg(conversation_id)}/messages"
        return self.request("POST", path, idempotent=False, **_body(payload, files)).json()

    def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation with its messages (Unthread documents no per-message delete).
        The path `DELETE /conversations/:id` is unconfirmed (facts file §3.5); a 404 means it is
        already gone (a repeated rollback), so it is not an error. True if it was deleted now."""
        return self.request("DELETE", f"/conversations/{_seg(conversation_id)}", ok=(404,)).status_code != 404

    def delete_customer(self, customer_id: str) -> bool:
        """`DELETE /customers/:id` (documented); a 404 means already gone. True if deleted now."""
        return self.request("DELETE", f"/customers/{_seg(customer_id)}", ok=(404,)).status_code != 404

    def create_tag(self, payload: dict[str, Any]) -> dict[str, Any]:
        """assumed path `POST /tags {name}` (unconfirmed, facts file §4.4; the emulator's choice)."""
        return self.request("POST", "/tags", json=payload, idempotent=False).json()

    def download_file(self, conversation_id: str, file_id: str) -> bytes:
        """A file of a conversation's message, byte for byte (facts file §6)."""
        return self.request("GET", f"/conversations/{_seg(conversation_id)}/files/{_seg(file_id)}/full").content

    def iter_messages(self, conversation_id: str) -> Iterator[dict[str, Any]]:
        """A conversation's messages oldest first (the initial message included)."""
        yield from self.iter_list(f"/conversations/{_seg(conversation_id)}/messages/list", {"order": ["ts", "id"]})
