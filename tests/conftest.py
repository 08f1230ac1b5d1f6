"""
Shared test set-up: quiet structlog (tests read events with
C{structlog.testing.capture_logs}, which works whatever the level).
"""

from __future__ import annotations

import logging

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
