"""Applicant verification against the registries, prefill, and the personal-data access log."""
