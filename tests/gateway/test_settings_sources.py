"""Settings from OpenTelemetry's standard variables, below leadgw's own."""

from __future__ import annotations

import pytest

from gateway.settings import Settings
from gateway.telemetry._exporters import metric_readers_from_env, span_exporters_from_env


def test_otel_prometheus_exporter_turns_the_endpoint_on(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "9999")
    settings = Settings()
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9999)
    assert metric_readers_from_env() == []  # served by the endpoint, not pushed


def test_otel_prometheus_defaults(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp,prometheus")
    monkeypatch.delenv("OTEL_EXPORTER_PROMETHEUS_HOST", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_PROMETHEUS_PORT", raising=False)
    settings = Settings()
    assert (settings.metrics_host, settings.metrics_port) == ("localhost", 9464)


def test_leadgw_settings_win_over_otel_variables(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "9999")
    monkeypatch.setenv("LEADGW_METRICS_PORT", "9100")
    assert Settings().metrics_port == 9100
    assert Settings(metrics_port=0).metrics_port == 0


def test_without_the_variable_nothing_changes(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    monkeypatch.delenv("LEADGW_METRICS_PORT", raising=False)
    assert Settings().metrics_port is None


def test_the_sdk_disabled_turns_the_otel_prometheus_exporter_off(monkeypatch) -> None:
    # docs/observability.md: OTEL_SDK_DISABLED=true turns every exporter off.
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.delenv("LEADGW_METRICS_PORT", raising=False)
    assert Settings().metrics_port is None


def test_prometheus_is_no_traces_exporter(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "prometheus")
    with pytest.raises(ValueError, match="metrics, not traces"):
        span_exporters_from_env()
