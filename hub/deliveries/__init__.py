"""Outbound deliveries: case results to national systems, new cases to departments' legacy systems."""
