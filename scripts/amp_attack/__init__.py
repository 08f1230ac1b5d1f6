"""
The attack suite behind C{scripts/attack}: hostile and careless clients
against a real C{amp-dispatch serve}, one family of attacks at a time, each
on a fresh server with a file-descriptor limit of 1024, with a clean client
measuring its latency meanwhile.

Standard library only (plus the schema package C{amp_dispatch_commands} to
classify fuzzed boxes); it shares the benchmark's helpers (L{amp_bench.wire},
L{amp_bench.procstat}, L{amp_bench.systems}).
"""
