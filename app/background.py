"""This browser session's background jobs (``hfnet_core.analysis.jobs``): who owns them, and letting go.

A page that submits a job to the shared pool records its key here, per page. When the session moves on -
another clip, method or target on that page (``release(page, keep=current)``) or another page altogether
(``release_other_pages``, called by the entry script on every run) - its jobs there are cancelled *for
this session*: the pool stops a job only once no other session owns it, so two people asking for the same
map share one computation and one leaving does not stop it for the other.
"""

from __future__ import annotations

import uuid
from typing import Iterable

import streamlit as st

from hfnet_core.analysis.jobs import JobPool, shared_pool

__all__ = ["owner", "pool", "track", "tracked", "release", "release_other_pages"]

_OWNER = "_hf_job_owner"
_TRACKED = "_hf_jobs"  # page -> pool keys this session submitted there


def owner() -> str:
    """This session's owner id for the pool (stable for the session's life)."""
    if _OWNER not in st.session_state:
        st.session_state[_OWNER] = uuid.uuid4().hex
    return str(st.session_state[_OWNER])


def pool() -> JobPool:
    return shared_pool()


def _tracked() -> dict[str, list[str]]:
    if _TRACKED not in st.session_state:
        st.session_state[_TRACKED] = {}
    return st.session_state[_TRACKED]


def track(page: str, keys: Iterable[str]) -> None:
    """Remember ``keys`` as this session's jobs on ``page`` (added to what it already has)."""
    jobs = _tracked().setdefault(page, [])
    jobs.extend(k for k in keys if k not in jobs)


def tracked(page: str) -> list[str]:
    return list(_tracked().get(page, []))


def release(page: str, keep: Iterable[str] = ()) -> list[str]:
    """Cancel (for this session) its jobs on ``page`` whose key is not in ``keep``; returns the keys of
    those still queued or running that it let go of."""
    keep = set(keep)
    jobs = _tracked().get(page, [])
    p, me, dropped = pool(), owner(), []
    for key in [k for k in jobs if k not in keep]:
        if p.status(key).active:
            p.cancel(key, me)
            dropped.append(key)
        jobs.remove(key)
    return dropped


def release_other_pages(current: str) -> None:
    """The session is on ``current``: let go of its jobs on every other page."""
    for page in [p for p, keys in _tracked().items() if p != current and keys]:
        release(page)
