"""The mock-registry tests use the shared `mocks`, `seed` and `control` fixtures of tests/conftest.py."""
