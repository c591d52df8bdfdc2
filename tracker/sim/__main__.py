"""`python -m tracker.sim`: serve a simulated App Platform app on loopback until Ctrl-C."""

from tracker.sim.server import main

if __name__ == "__main__":
    raise SystemExit(main())
