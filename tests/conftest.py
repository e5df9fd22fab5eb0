"""Shared test fixtures."""

from __future__ import annotations

import contextlib

import jax.monitoring
import pytest

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compilations():
    """Count XLA backend compilations inside the block: ``with ... as n: ...; n[0]``."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE_EVENT:
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def compile_counter():
    return count_compilations
