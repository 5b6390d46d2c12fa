"""Root conftest: it only loads the plugin, so every entry point (setA, setB, tests) shares one wiring."""

pytest_plugins = ("cutover.suite.plugin",)
