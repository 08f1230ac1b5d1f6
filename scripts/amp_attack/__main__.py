"""
C{python -m amp_attack}: run the attack suite (see L{amp_attack.cli}).
"""

from .cli import main

main()
