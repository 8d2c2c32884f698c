"""WikiPublisher on the Wiki.js 2.x GraphQL API (`POST {url}/graphql`, `Authorization: Bearer
<API key>`; keys are made under Administration > API Access).

One `pages.list(locale)` query finds the pages that exist (path -> id); each page is then
`pages.update(id, …)` or `pages.create(…)`. Both answer a `responseResult` (succeeded, errorCode,
message) that is checked: Wiki.js reports most failures there with HTTP 200.

Pages are stored with editor `code` (Wiki.js's raw-HTML editor): the content is the HTML MkDocs
rendered, so extensions (admonitions, tables, code highlighting) look as MkDocs made them.

Not tested against a real Wiki.js (none can run here): the tests run this client against a local
GraphQL server built from the Wiki.js 2.x page schema, which checks every query against that schema
and the auth header.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.deployer.ports import DocsFailed, Published, WikiPage

EDITOR = "code"
TIMEOUT_S = 30.0
_RESULT = "responseResult { succeeded errorCode slug message }"

LIST_PAGES = """
query KilnListPages($locale: String!) {
  pages { list(locale: $locale) { id path locale } }
}
"""

CREATE_PAGE = f"""
mutation KilnCreatePage(
  $content: String!, $description: String!, $editor: String!, $isPublished: Boolean!,
  $isPrivate: Boolean!, $locale: String!, $path: String!, $tags: [String]!, $title: String!
) {{
  pages {{
    create(
      content: $content, description: $description, editor: $editor, isPublished: $isPublished,
      isPrivate: $isPrivate, locale: $locale, path: $path, tags: $tags, title: $title
    ) {{ {_RESULT} page {{ id path }} }}
  }}
}}
"""

UPDATE_PAGE = f"""
mutation KilnUpdatePage(
  $id: Int!, $content: String!, $description: String!, $editor: String!, $isPublished: Boolean!,
  $isPrivate: Boolean!, $locale: String!, $path: String!, $tags: [String]!, $title: String!
) {{
  pages {{
    update(
      id: $id, content: $content, description: $description, editor: $editor,
      isPublished: $isPublished, isPrivate: $isPrivate, locale: $locale, path: $path, tags: $tags,
      title: $title
    ) {{ {_RESULT} }}
  }}
}}
"""


class WikiJs:
    def __init__(self, url: str, api_key: str, *, key_env: str, client: httpx.Client | None = None):
        self._endpoint = url.rstrip("/") + "/graphql"
        self._api_key = api_key
        self._key_env = key_env  # named in errors; the key itself never is
        self._client = client or httpx.Client(timeout=TIMEOUT_S)

    def publish(self, pages: list[WikiPage], *, locale: str, tags: list[str]) -> Published:
        listed = self._graphql(LIST_PAGES, {"locale": locale})["pages"]["list"]
        existing = {item["path"]: item["id"] for item in listed if item.get("locale", locale) == locale}
        created, updated = [], []
        for page in pages:
            fields = {
                "content": page.content,
                "description": page.description,
                "editor": EDITOR,
                "isPublished": True,
                "isPrivate": False,
                "locale": locale,
                "path": page.path,
                "tags": tags,
                "title": page.title,
            }
            if page.path in existing:
                data = self._graphql(UPDATE_PAGE, {"id": existing[page.path], **fields})
                self._check(data["pages"]["update"], "update", page.path)
                updated.append(page.path)
            else:
                data = self._graphql(CREATE_PAGE, fields)
                self._check(data["pages"]["create"], "create", page.path)
                created.append(page.path)
        return Published(created=tuple(created), updated=tuple(updated))

    def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.post(
                self._endpoint,
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        except httpx.HTTPError as exc:
            raise DocsFailed(f"wiki {self._endpoint} unreachable: {type(exc).__name__}: {exc}") from None
        if response.status_code in (401, 403):
            raise DocsFailed(
                f"wiki {self._endpoint} refused the API key (HTTP {response.status_code}): "
                f"check the key in {self._key_env}"
            )
        if response.status_code != 200:
            raise DocsFailed(f"wiki {self._endpoint}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            body = response.json()
        except ValueError:
            raise DocsFailed(f"wiki {self._endpoint} answered no JSON: {response.text[:300]}") from None
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"])
            forbidden = "forbidden" in messages.lower()
            hint = f" (is the key in {self._key_env} allowed to write pages?)" if forbidden else ""
            raise DocsFailed(f"wiki {self._endpoint}: {messages[:500]}{hint}")
        return body["data"]

    @staticmethod
    def _check(answer: dict[str, Any] | None, action: str, path: str) -> None:
        result = (answer or {}).get("responseResult") or {}
        if not result.get("succeeded"):
            raise DocsFailed(
                f"wiki page {path}: {action} failed: {result.get('message') or 'no message'} "
                f"(Wiki.js error {result.get('errorCode', '?')})"
            )
