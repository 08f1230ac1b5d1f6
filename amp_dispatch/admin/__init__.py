"""
The admin side of a dispatcher: its metrics (L{Metrics}, the listeners'
hook and Prometheus collector) and the HTTP site of its admin listener
(L{admin_site}: C{/metrics}, C{/healthz}, C{/readyz}).
"""

from ._metrics import ListenerCounts, Metrics
from ._site import admin_site

__all__ = ["ListenerCounts", "Metrics", "admin_site"]
