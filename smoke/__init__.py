"""Operator-facing checks of the smoke matrix: Set A on a dev branch or sandbox, Set B in the window."""
