"""Benchmarks: they print figures against a baseline measured in the same run; never fail on speed."""
