"""
amp-dispatch: answers a front end's "which worker takes my next job?" over AMP
with the most able worker, from worker updates the scheduler streams in.

The public modules are L{amp_dispatch.client} (front-end and scheduler client
libraries) and L{amp_dispatch.testing} (a dispatcher in memory, for testing
code that uses them); the wire schema is the separate package
C{amp_dispatch_commands}.  The command line is C{amp-dispatch}
(C{python -m amp_dispatch}).  The private packages: C{protocol} (the wire),
C{store} (where the workers live), C{server} (configuration, listeners,
service), C{cli}.
"""

__version__ = "0.1.0"
