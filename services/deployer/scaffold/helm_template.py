"""Rendered chart manifests -> Helm templates that print them unchanged, except the secrets' values,
which Helm reads at install time (`--set-file keys.privatePem=…`, `--set-file appSecrets.NAME=…`).

The scaffold renders a placeholder where a secret's value goes (`key_mark`, `app_secret_mark`);
`helm_template` turns placeholders into Helm actions in the secret templates only
(SECRET_TEMPLATES). Everywhere else a placeholder is plain text like any other value: the app
config is repository content, and a value written as a placeholder must not become an action that
prints a key or a secret into a ConfigMap.
"""

from __future__ import annotations

import re

SECRET_TEMPLATES = frozenset({"templates/secret.yaml", "templates/app-secret.yaml"})
# Go templates open an action only at `{{`; `}}` and backticks outside an action are plain text.
HELM_LITERAL_OPEN = '{{ "{{" }}'
_KEY_MARK = "@@kiln-helm-secret:{field}@@"
_KEY_ACTION = '{{{{ required "--set-file keys.{field}=PATH" .Values.keys.{field} | b64enc | quote }}}}'
_APP_SECRET_MARK = "@@kiln-helm-app-secret:{name}@@"
_APP_SECRET_ACTION = (
    '{{{{ required "--set-file appSecrets.{name}=PATH" (index .Values.appSecrets "{name}")'
    " | b64enc | quote }}}}"
)
_APP_SECRET_MARKS = re.compile(r"@@kiln-helm-app-secret:([A-Z_][A-Z0-9_]*)@@")
KEY_FIELDS = ("privatePem", "publicPem")


def key_mark(field: str) -> str:
    return _KEY_MARK.format(field=field)


def app_secret_mark(name: str) -> str:
    return _APP_SECRET_MARK.format(name=name)


def helm_template(text: str, *, secrets: bool = False) -> str:
    """Rendered manifest text → a Helm template that prints it unchanged: every `{{` a value brought
    (an image reference, an env value, the config) is escaped, so Helm never evaluates it
    (`lookup` could read the cluster's secrets); with `secrets` (a file of SECRET_TEMPLATES), Kiln's
    own placeholders become the actions that read the values given at install time."""
    escaped = text.replace("{{", HELM_LITERAL_OPEN)
    if not secrets:
        return escaped
    for field in KEY_FIELDS:
        escaped = escaped.replace(key_mark(field), _KEY_ACTION.format(field=field))
    # Names match ENV_NAME_PATTERN (the config checks them), so they are safe inside the action.
    return _APP_SECRET_MARKS.sub(lambda m: _APP_SECRET_ACTION.format(name=m.group(1)), escaped)
