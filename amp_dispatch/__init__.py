"""
amp-dispatch: answers a front end's "which worker takes my next job?" over AMP
with the most able worker, from worker updates the scheduler streams in.

The public modules are L{amp_dispatch.client} (front-end and scheduler client
libraries); the wire schema is the separate package C{amp_dispatch_commands}.
The command line is C{amp-dispatch} (C{python -m amp_dispatch}).
"""

__version__ = "0.1.0"
