"""Fixtures for the served-stack tests: one stack per test session, on 127.0.0.1, free ports.

Tests marked ``@pytest.mark.infra`` need the stack. They FAIL (never skip) when the system
dependencies are missing, with a message that says to run ``make infra-deps``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from infra.config import load_config
from infra.stack import StackState, client_env, down, is_running, missing_deps, up
from tests.infra.infra_helpers import Stack, make_stack_dir, stack_settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "infra: needs the served stack on 127.0.0.1 (PostgreSQL, s3rver, MLflow, Prefect); `make infra-deps`"
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Start the whole stack once per session; stop every process by PID afterwards."""
    stack_dir = make_stack_dir()
    cfg = load_config(stack_settings(stack_dir))
    missing = missing_deps(cfg)
    if missing:
        pytest.fail(f"served-stack dependencies missing: {'; '.join(missing)}. Run `make infra-deps` first.",
                    pytrace=False)
    state = up(cfg)
    try:
        yield Stack(cfg=cfg, state=state, env=client_env(cfg, state))
    finally:
        recorded = StackState.load(cfg).procs
        down(cfg)
        left = [f"{name} (pid {p.pid})" for name, p in recorded.items() if is_running(p)]
        shutil.rmtree(stack_dir, ignore_errors=True)
        assert not left, f"stack-down left processes running: {left}"


@pytest.fixture(autouse=True)
def _stack_client(request: pytest.FixtureRequest) -> Iterator[None]:
    """For ``infra``-marked tests: point in-process Prefect/MLflow clients at the test stack."""
    if request.node.get_closest_marker("infra") is None:
        yield
        return
    st: Stack = request.getfixturevalue("stack")
    with st.client():
        yield
