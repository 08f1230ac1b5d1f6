"""
Integration tests: the real C{amp-dispatch serve} process on free loopback
ports, and clients talking to it over TCP.
"""
