"""Reading metric samples: from this process's Prometheus registry, or from a scraped text
exposition of another process."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["metric", "sample"]


def sample(name: str, **labels: str) -> float:
    """The value of `name{labels}` in this process's default registry; 0 when absent."""
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


def metric(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name{labels}` (labels matched exactly) in a Prometheus text
    exposition; None if there is no such sample."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None
