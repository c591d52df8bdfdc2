"""Test helpers, importable by the tests and the benches as `tests.support.*`."""
