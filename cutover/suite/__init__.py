"""The pytest suite: the plugin, the checks, the manual checks, the rehearsal flow and its outputs."""
