"""PAR2 parsing (no I/O): the names, sizes and hashes a PAR2 set records."""

from altmount.par2.packets import MAGIC, Par2File, Par2Main, Par2Parser, Par2Set, parse_par2

__all__ = ["MAGIC", "Par2File", "Par2Main", "Par2Parser", "Par2Set", "parse_par2"]
