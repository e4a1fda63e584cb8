"""Flows started from this process: heartbeats only when a real Prefect API is configured."""

from __future__ import annotations

from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)

from creditflow.flows.runner import embedded_flow_settings


def test_embedded_mode_sends_no_heartbeats_and_restores_the_setting_after():
    with temporary_settings(updates={PREFECT_API_URL: None, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):
        with embedded_flow_settings():
            assert get_current_settings().flows.heartbeat_frequency is None
        assert get_current_settings().flows.heartbeat_frequency == 180


def test_with_a_prefect_api_heartbeats_are_kept():
    server = {PREFECT_API_URL: "http://127.0.0.1:4200/api", PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 90}
    with temporary_settings(updates=server), embedded_flow_settings():
        assert get_current_settings().flows.heartbeat_frequency == 90
