"""`python -m altmount` is the `altmount` command."""

from altmount.cli import main

main()
