"""Packaged workflow definitions (JSON, validated against schemas/workflow-definition.v1.json).

A regular package, not a bare folder, so that setuptools ships the JSON files with the wheel.
"""
