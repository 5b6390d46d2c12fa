"""Operator-facing checks of the rehearsal only: the manual checks (A11-A19) and A20-active."""
