"""
The C{mtls:} server endpoint strings (TLS that requires and verifies a client
certificate), for L{twisted.internet.endpoints.serverFromString}: see
L{amp_dispatch.server._mtls}.
"""

from amp_dispatch.server._mtls import MutualTLSServerParser

amp_dispatch_mtls = MutualTLSServerParser()
