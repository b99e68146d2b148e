"""The path-traversal corpus: names a client may send that must never open a file outside
the data root (nor a hidden, non-TIFF or virtual one inside it).

Data and one sender, not tests: `test_api_security.py` sends it in-process and through
`resolve_under`; `test_stress.py` and `test_remote_root.py` send every variant through
every route that takes a path (`send_refused`) to a real `satdask serve` process. A
variant is `str` (any text, sent JSON-escaped and percent-encoded as UTF-8) or `bytes`
(raw bytes that are not valid UTF-8, such as overlong encodings of '.' and '/', sent as
they are).

The symlinks it names are made by the `data` fixture (conftest.py): `escape.tif` and
`chain.tif` (-> escape.tif) lead to the secret outside the root, `sub/up.tif` does so by
a relative target, `linkdir` and `rootfs` are directory links to the outside folder and
to `/`, `passwd.tif` links to /etc/passwd and `loop.tif` to itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from svc_support import JSON, NOT_FOUND, DataRoot, json_body, query_targets

LONG = 4000  # over MAX_PATH_CHARS (1024) yet under the 16 KB body limit


def corpus(data: DataRoot) -> list[str | bytes]:
    secret, root, outside = data.secret, data.root, data.outside
    up = f"../{outside.name}/{secret.name}"  # the secret, relative to the root
    name = secret.name
    return [
        # ../ in every shape
        up,
        f"sub/../{up}",
        f"./{up}",
        f"sub/./../../{outside.name}/{name}",
        "../../../../../../etc/passwd",
        f"../{root.name}/sample.tif",  # out and back in: still refused
        "..",
        "../",
        "sub/..",
        f".../{outside.name}/{name}",
        f"....//{outside.name}/{name}",  # what a naive "../" stripper leaves as "../"
        f"..;/{outside.name}/{name}",
        f"sub/..%00/{up}",
        # absolute paths
        str(secret),
        "/etc/passwd",
        f"/{name}",
        f"{root}/sample.tif",
        "//etc/passwd",
        "///etc/passwd",
        "/proc/self/environ",
        "/proc/self/root/etc/passwd",
        "/dev/zero",
        # home directories and variables
        f"~/{name}",
        "~root/.bashrc",
        f"~/../{name}",
        "~",
        f"$HOME/{name}",
        f"${{HOME}}/../{outside.name}/{name}",
        # symlinks escaping the root: file, chain, relative target, directories, loop
        "escape.tif",
        "chain.tif",
        "sub/up.tif",
        f"linkdir/{name}",
        f"rootfs{secret}",
        "rootfs/etc/passwd",
        "passwd.tif",
        "loop.tif",
        # URL schemes, GDAL virtual file systems and connection strings
        f"file://{secret}",
        f"file:{secret}",
        "file:sample.tif",
        "http://127.0.0.1:9/secret.tif",
        "https://example.invalid/secret.tif",
        "s3://bucket/secret.tif",
        "gs://bucket/secret.tif",
        f"/vsicurl/http://127.0.0.1:9/{name}",
        f"/vsizip/{secret}.zip/a.tif",
        f"/vsigzip/{secret}",
        f"/vsisubfile/0_1000,{secret}",
        "/vsimem/a.tif",
        "/vsistdin/",
        f"vsicurl/{name}",
        f"GTIFF_DIR:1:{secret}",
        f'HDF5:"{secret}"://band',
        # VRT in any spelling, and VRT XML given as the "path"
        "evil.vrt",
        "evil.VRT",
        "sample.tif.vrt",
        "sub/../evil.vrt",
        f'<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand><SimpleSource>'
        f"<SourceFilename>{secret}</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>",
        # NUL and other control characters
        "sample.tif\x00",
        "sample.tif\x00.vrt",
        f"\x00{up}",
        "sample\n.tif",
        "sample.tif\r\n",
        f"\t{up}",
        "sample\x7f.tif",
        # percent-encoded (the server must not decode twice) and double-encoded
        f"%2e%2e/{outside.name}/{name}",
        f"..%2f{outside.name}%2f{name}",
        f"%2e%2e%2f{outside.name}%2f{name}",
        f"%252e%252e%252f{outside.name}%252f{name}",
        f"..%5c{outside.name}%5c{name}",
        "percent%2e.tif",  # exists, but '%' is refused outright
        f"%c0%ae%c0%ae/{outside.name}/{name}",
        f"%uff0e%uff0e/{outside.name}/{name}",
        # overlong and otherwise invalid UTF-8, as raw bytes
        f"\xc0\xae\xc0\xae/{outside.name}/{name}".encode("latin-1"),
        f"..\xc0\xaf{outside.name}\xc0\xaf{name}".encode("latin-1"),
        f"\xe0\x80\xae\xe0\x80\xae/{outside.name}/{name}".encode("latin-1"),
        f"\xf0\x80\x80\xaf{name}".encode("latin-1"),
        b"sample\xff.tif",
        b"sample\xed\xa0\x80.tif",  # a UTF-16 surrogate, UTF-8 encoded (CESU-8)
        # a lone surrogate as text (a JSON \ud800 escape)
        "sample\ud800.tif",
        # unicode lookalikes of '.', '/' and '\', which NFKC would fold into traversal
        f"..\uff0f{outside.name}\uff0f{name}",  # fullwidth solidus
        f"\u2024\u2024/{outside.name}/{name}",  # one dot leader
        f"\uff0e\uff0e/{outside.name}/{name}",  # fullwidth full stop
        f"\u2025/{outside.name}/{name}",  # two dot leader
        f"..\u2215{outside.name}\u2215{name}",  # division slash
        f"..\u2044{outside.name}\u2044{name}",  # fraction slash
        f"..\uff3c{outside.name}\uff3c{name}",  # fullwidth reverse solidus
        f"\ufe52\ufe52/{outside.name}/{name}",  # small full stop
        "sample.tif\u200b",  # zero-width space after the suffix
        "\u202eelpmas.tif",  # right-to-left override
        # Windows separators, drive letters, UNC and device paths
        f"..\\{outside.name}\\{name}",
        "sub\\tile.tif",
        "C:\\Windows\\win.ini",
        f"C:/{name}",
        "c:sample.tif",
        f"\\\\server\\share\\{name}",
        f"//server/share/{name}",
        f"\\\\?\\C:\\{name}",
        "\\\\.\\pipe\\x.tif",
        "sample.tif::$DATA",
        "sample.tif.",
        "sample.tif ",
        "CON.tif",
        # hidden files, directories, other suffixes
        ".hidden.tif",
        "sub/.hidden.tif",
        "dir.tif",
        "sub",
        "sample",
        "notes.txt",
        "",
        " ",
        ".",
        "/",
        # very long paths
        "a" * 300 + ".tif",  # one name over NAME_MAX
        "/".join(["a" * 200] * 5) + ".tif",
        "../" * 300 + "etc/passwd",
        "sub/" * 200 + up,
        "a/" * (LONG // 2) + "x.tif",
        str(secret) + "/" * LONG,
    ]


def utf8_text(data: DataRoot) -> list[str]:
    """The text variants an HTTP client can encode as UTF-8 (no lone surrogates)."""
    out = []
    for variant in corpus(data):
        if isinstance(variant, str):
            try:
                variant.encode("utf-8")
            except UnicodeEncodeError:
                continue
            out.append(variant)
    return out


JSON_ROUTES = ("scene", "tile_path")  # the two forms of POST /infer
QUERY_ROUTE = "info"  # GET /scenes/info?path=


def expected_status(variant: str | bytes, route: str) -> int:
    """404, the answer for a missing file, unless the request itself is malformed (400).

    Malformed: an empty or over-long path (the schema's limits), and in a JSON body any
    text that is not valid UTF-8. In a query string such bytes decode to U+FFFD, so the
    path is merely one that does not exist.
    """
    from service.paths import MAX_PATH_CHARS

    if route in JSON_ROUTES and isinstance(variant, bytes):
        return 400
    if isinstance(variant, bytes):
        return 404
    if not variant or len(variant) > MAX_PATH_CHARS:
        return 400
    if route in JSON_ROUTES:
        try:
            variant.encode("utf-8")
        except UnicodeEncodeError:
            return 400
    return 404


def send_refused(
    http: httpx.Client, variants: Sequence[str | bytes], *, leaks: Sequence[str]
) -> int:
    """Send every variant through both forms of POST /infer and GET /scenes/info.

    Each answer must have its expected status and a JSON body, a 404 the same body as
    a missing file, and none may name any of `leaks`. Returns how many were sent.
    """
    answers = 0
    for variant in variants:
        sent = [
            (route, http.post("/infer", content=json_body(route, variant), headers=JSON))
            for route in JSON_ROUTES
        ]
        sent += [(QUERY_ROUTE, http.get(target)) for target in query_targets(variant)]
        for route, r in sent:
            answers += 1
            want = expected_status(variant, route)
            assert r.status_code == want, (variant, route, r.text)
            assert r.headers["content-type"].startswith("application/json")
            body = r.json()
            assert body["status_code"] == want
            if want == 404:
                assert body == NOT_FOUND, (variant, route)
            for leak in leaks:
                assert leak not in r.text, (variant, route, r.text)
    return answers
