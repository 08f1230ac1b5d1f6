"""
Prometheus's text format read as a scrape reads it: every sample by name
and labels (with C{prometheus_client}'s parser), for the metrics tests.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from prometheus_client.parser import text_string_to_metric_families

#: A sample's name and its labels, sorted.
Key = Tuple[str, Tuple[Tuple[str, str], ...]]
Samples = Dict[Key, float]


def parse_samples(text: str) -> Samples:
    """
    Every sample of an exposition, by name and labels.
    """
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def sample(samples: Samples, name: str, **labels: str) -> Optional[float]:
    """
    The value of the sample C{name} with exactly C{labels}, if any.
    """
    return samples.get((name, tuple(sorted(labels.items()))))
