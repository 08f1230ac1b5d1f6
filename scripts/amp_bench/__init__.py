"""
The side-by-side benchmark behind C{scripts/bench}: amp-dispatch beside a stock
AMP responder and Redis, measured with one pre-encoded load generator.

Modules that run in the load generator (C{loadgen}, C{wire}, C{procstat}) use
the standard library only, so it runs under a bare C{pypy3}.
"""
