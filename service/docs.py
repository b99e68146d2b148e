"""The API docs as one plain HTML page, rendered from the OpenAPI document: no JavaScript.

Swagger UI loads its scripts and styles from a CDN, so on a machine without internet
its page stays blank. This page is built here from the same document that
`/schema/openapi.json` serves, and references nothing but its own anchors and that
document: it works offline, in any browser or from `curl`, and under a
Content-Security-Policy that lets it load nothing at all (`CSP`).

Pure: a mapping in, text out; every value from the document is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# What the page may load: nothing but its own inline style.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1b1b; }
code { font: 13px ui-monospace, monospace; background: #f2f2f2; padding: 0 .2em; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #ddd;
         padding: .3rem .5rem; }
section { border-top: 2px solid #444; margin-top: 2rem; }
.method { font-weight: bold; text-transform: uppercase; }
"""


def _text(value: Any) -> str:
    """Escaped text, with markdown's `code` spans kept as <code>."""
    escaped = html.escape(str(value), quote=True)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _slug(*parts: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts) or "top"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(schema: Any) -> str:
    """A schema as one line of HTML: `integer (0 to 2147483647)`, a link to a component."""
    if not isinstance(schema, Mapping) or not schema:
        return "any"
    if "$ref" in schema:
        name = _ref_name(str(schema["$ref"]))
        return f'<a href="#{_slug("schema", name)}">{html.escape(name)}</a>'
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " | ".join(type_of(s) for s in schema[key])
    if "const" in schema:
        return f"<code>{html.escape(json.dumps(schema['const']))}</code>"
    if "enum" in schema:
        return "one of " + ", ".join(
            f"<code>{html.escape(json.dumps(v))}</code>" for v in schema["enum"]
        )
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        text = " | ".join(html.escape(str(k)) for k in kind)
    elif kind == "array":
        text = f"array of {type_of(schema.get('items'))}"
    else:
        text = html.escape(str(kind))
    limits = list(_limits(schema))
    return text + (f" ({', '.join(limits)})" if limits else "")


def _limits(schema: Mapping[str, Any]) -> Iterator[str]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        yield f"{_number(low)} to {_number(high)}"
    short, long = schema.get("minLength"), schema.get("maxLength")
    if short is not None or long is not None:
        yield f"{short or 0} to {_number(long)} characters"
    if "pattern" in schema:
        yield f"matching <code>{html.escape(str(schema['pattern']))}</code>"
    if schema.get("additionalProperties") is False:
        yield "no other fields"


def _number(value: Any) -> str:
    """A bound as written: 0 rather than 0.0, and '…' for none."""
    if value is None:
        return "…"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _operations(schema: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    out = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                out.append((method.upper(), str(path), item[method]))
    return out


def _operation(method: str, path: str, op: Mapping[str, Any]) -> str:
    parts = [
        f'<section id="{_slug("op", method, path)}">',
        f'<h2><span class="method">{method}</span> <code>{html.escape(path)}</code></h2>',
    ]
    if op.get("summary"):
        parts.append(f"<p><strong>{_text(op['summary'])}</strong></p>")
    if op.get("description"):
        parts.append(f"<p>{_text(op['description'])}</p>")
    if op.get("security") == [{}]:
        parts.append("<p>Needs no API key.</p>")
    params = [
        (
            f"<code>{html.escape(str(p.get('name')))}</code>",
            html.escape(str(p.get("in", ""))),
            type_of(p.get("schema")),
            "yes" if p.get("required") else "no",
            _text(p.get("description", "")),
        )
        for p in op.get("parameters", [])
    ]
    if params:
        parts.append("<h3>Parameters</h3>")
        parts.append(_table(("name", "in", "type", "required", "description"), params))
    body = op.get("requestBody")
    if isinstance(body, Mapping):
        parts.append("<h3>Request body</h3>")
        rows = [
            (f"<code>{html.escape(str(media))}</code>", type_of(content.get("schema")))
            for media, content in body.get("content", {}).items()
        ]
        parts.append(_table(("content type", "schema"), rows))
    responses = [
        (
            f"<code>{html.escape(str(status))}</code>",
            _text(answer.get("description", "")),
            ", ".join(type_of(c.get("schema")) for c in answer.get("content", {}).values()) or "-",
        )
        for status, answer in op.get("responses", {}).items()
    ]
    if responses:
        parts.append("<h3>Responses</h3>")
        parts.append(_table(("status", "meaning", "body"), responses))
    parts.append("</section>")
    return "\n".join(parts)


def _component(name: str, schema: Mapping[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = [
        (
            f"<code>{html.escape(str(field))}</code>",
            type_of(prop),
            "yes" if field in required else "no",
            _text(prop.get("description", "")) if isinstance(prop, Mapping) else "",
        )
        for field, prop in schema.get("properties", {}).items()
    ]
    parts = [f'<section id="{_slug("schema", name)}">', f"<h3>{html.escape(name)}</h3>"]
    if schema.get("description"):
        parts.append(f"<p>{_text(schema['description'])}</p>")
    if rows:
        parts.append(_table(("field", "type", "required", "description"), rows))
    else:
        parts.append(f"<p>{type_of(schema)}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def render_docs(schema: Mapping[str, Any], *, openapi_url: str) -> str:
    """The whole page for an OpenAPI document; `openapi_url` is where it is served."""
    info = schema.get("info", {})
    title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
    operations = _operations(schema)
    index = "".join(
        f'<li><a href="#{_slug("op", m, p)}"><span class="method">{m}</span> '
        f"<code>{html.escape(p)}</code></a> {_text(op.get('summary', ''))}</li>"
        for m, p, op in operations
    )
    schemes = schema.get("components", {}).get("securitySchemes", {})
    auth = (
        "<p>Every route that does not say otherwise needs the API key: "
        "<code>Authorization: Bearer KEY</code> or <code>X-API-Key: KEY</code>.</p>"
        if schemes
        else ""
    )
    components = schema.get("components", {}).get("schemas", {})
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)} API</title><style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(title)} API</h1>",
            f"<p>{_text(info.get('description', ''))}</p>",
            f'<p>The OpenAPI document: <a href="{html.escape(openapi_url)}">'
            f"{html.escape(openapi_url)}</a>. Bodies are JSON; errors are "
            "<code>{status_code, detail}</code>.</p>",
            auth,
            f"<h2>Operations</h2><ul>{index}</ul>",
            *(_operation(m, p, op) for m, p, op in operations),
            '<section id="schemas"><h2>Schemas</h2></section>' if components else "",
            *(_component(name, s) for name, s in components.items()),
            "</body></html>",
        ]
    )
