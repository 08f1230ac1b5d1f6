"""
The C{twist amp-dispatch} plugin: runs the same service as C{amp-dispatch serve}.
"""

from twisted.application.service import ServiceMaker

amp_dispatch = ServiceMaker(
    "amp-dispatch",
    "amp_dispatch.cli._serve",
    "Worker dispatcher: answers NextWorker with the most able worker.",
    "amp-dispatch",
)
