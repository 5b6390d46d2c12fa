"""The core every other part stands on: the plan, errors and exit codes, redaction, database access.

It imports nothing above it (an import-linter contract), so the reference cutover that runs in
production and the sandbox can both rely on it without pulling in the test suite.
"""
