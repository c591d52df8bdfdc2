"""The simulated platform as the tests share it (the `clock` and `sim` fixtures of conftest.py)."""

SIM_TOKEN = "sim-test-token-6f1c2b"  # distinctive, so a test can assert it is never shown
