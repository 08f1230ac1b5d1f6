"""
C{python -m amp_dispatch}: the C{amp-dispatch} command.
"""

from ._cli import main

main()
