"""
C{python -m amp_dispatch}: the C{amp-dispatch} command.
"""

from .cli._main import main

main()
