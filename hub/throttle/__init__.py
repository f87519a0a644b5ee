"""Abuse limits: attempt counters and WS-Security nonces in the database, and request-body limits."""
