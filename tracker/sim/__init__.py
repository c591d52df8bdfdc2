"""The simulated platform: the demo's, the tests' and the benches' DigitalOcean."""
