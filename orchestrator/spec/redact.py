"""Credentials in URIs, masked wherever semtune writes or shows one.

A study's ``tracking_uri``, ``ray_address`` or any other address may carry a password
(``http://user:secret@host``) or a secret query parameter (``?token=…``). Everything semtune
writes (``spec.yaml``, ``study.json``, MLflow params and tags, reports, ``semtune.log``, the
terminal) shows it masked: ``http://user:***@host``. Credentials belong in the environment
(``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, ``AWS_*``), where MLflow reads them;
a URI read back from those files is made connectable again by dropping what was masked.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

MASK = "***"
# Anything that looks like scheme://…, up to whitespace, quotes or angle brackets (text, Markdown, HTML).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# Query parameters whose values are secrets: ?password=, ?access_key=, ?X-Amz-Signature=, ?sig= (Azure SAS), …
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|credential|signature|auth|^sig$", re.IGNORECASE)


def redact_uri(text: str) -> str:
    """``text`` with every URI's password and secret query values replaced by ``***`` (the username is kept)."""
    return _URI.sub(lambda m: _redact_one(m.group(0)), text)


def redact_values(doc: Any) -> Any:
    """A JSON-like document (a dumped spec, a record) with :func:`redact_uri` applied to every string in it."""
    if isinstance(doc, dict):
        return {k: redact_values(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact_values(v) for v in doc]
    return redact_uri(doc) if isinstance(doc, str) else doc


def connectable_uri(uri: str) -> str:
    """A URI read back from a file semtune wrote, without what :func:`redact_uri` masked.

    Left in, ``user:***@`` would be sent as the password (``requests`` lets a URI's userinfo override
    the credentials MLflow reads from ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``), so the
    whole userinfo goes, and so does every query parameter whose value is ``***``. Other URIs are unchanged.
    """
    base, query, fragment = _split(uri)
    prefix, userinfo, rest = _split_userinfo(base)
    if userinfo.partition(":")[2] == MASK:
        base = prefix + rest
    kept = [p for p in query[1:].split("&") if p.partition("=")[2] != MASK] if query else []
    return base + ("?" + "&".join(kept) if kept else "") + fragment


def _redact_one(uri: str) -> str:
    base, query, fragment = _split(uri)
    prefix, userinfo, rest = _split_userinfo(base)
    user, colon, _ = userinfo.partition(":")
    if colon:
        base = f"{prefix}{user}:{MASK}@{rest}"
    if query:
        query = "?" + "&".join(_mask_pair(p) for p in query[1:].split("&"))
    return base + query + fragment


def _split(uri: str) -> tuple[str, str, str]:
    """``(before ?, "?query" or "", "#fragment" or "")``, as RFC 3986 splits them."""
    head, hash_, fragment = uri.partition("#")
    base, question, query = head.partition("?")
    return base, question + query, hash_ + fragment


def _split_userinfo(base: str) -> tuple[str, str, str]:
    """``("scheme://", userinfo, the rest)``. The userinfo ends at the last ``@``, not at the first ``/``:
    a secret with an unencoded ``/`` (AWS secret keys have them) is masked too, at worst with part of a path."""
    scheme, sep, rest = base.partition("://")
    userinfo, at, after = rest.rpartition("@")
    return (scheme + sep, userinfo, after) if at else (scheme + sep, "", rest)


def _mask_pair(pair: str) -> str:
    key, eq, _ = pair.partition("=")
    return f"{key}={MASK}" if eq and _SECRET_PARAM.search(unquote(key)) else pair
