"""The simulated platform: the demo's, the tests' and the benches' DigitalOcean.

`server` serves the API on loopback (routes, rate budget, archives, `python -m tracker.sim`);
`timeline` scripts each deployment; `shapes` renders the API's JSON; `faults` misbehaves on
request; `autodeploy` deploys each new tip of a repository's branch.
"""

from tracker.sim.autodeploy import AutoDeploy, Deployed, Timings
from tracker.sim.faults import Fault, FaultKind
from tracker.sim.server import SimRequest, SimulatedPlatform, main
from tracker.sim.shapes import BUILD_FAILURE_LINE, DEPLOY_FAILURE_LINE, ZERO_TIME
from tracker.sim.timeline import Outcome, ShaIn, SupersedeOn

__all__ = [
    "BUILD_FAILURE_LINE",
    "DEPLOY_FAILURE_LINE",
    "ZERO_TIME",
    "AutoDeploy",
    "Deployed",
    "Fault",
    "FaultKind",
    "Outcome",
    "ShaIn",
    "SimRequest",
    "SimulatedPlatform",
    "SupersedeOn",
    "Timings",
    "main",
]
