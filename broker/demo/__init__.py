"""`agent-broker demo` (`make demo`): the whole story, told against the running dev stack.

alice signs in at the dev IdP; research-agent exchanges her ID token and sees only its tools;
an allowed, a denied and an argument-conditioned call; summarizer-agent gets a narrower token
by re-delegation; erin (the broker's admin) revokes the session and the next call fails, with
the measured delay. URLs and dev secrets come from `.run/`, written by `make run`.
"""

from broker.demo.run import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK, run_demo

__all__ = ["EXIT_FAILED", "EXIT_NOT_RUNNING", "EXIT_OK", "run_demo"]
