"""The plugin's hooks, by job: the run's life (session), which tests run (collection), what is shown (reporting)."""
