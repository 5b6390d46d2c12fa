"""The manual checks: answers (file, terminal, journal) and the assists that gather evidence for them."""
