"""`python -m pdfleet` = the `pdfleet` command."""

from pdfleet.cli import main

main()
