"""
The wire, both sides: framing, the schema-driven codecs, the listeners'
protocols (each role's box receiver and fast paths), and what a peer can make
us log.  Private: the public wire schema is C{amp_dispatch_commands}.
"""
