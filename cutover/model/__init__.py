"""The embedded reference model: its plan, schema and data generator, shipped as package data.

The only place besides an operator's plan file that knows table names; the code takes them from the plan.
"""
