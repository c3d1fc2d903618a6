"""`edgewise demo`: the whole story on one machine, on embedded defaults.

The demo is an orchestrator over every part (like the CLI, it may import them all); nothing
else imports it. `studio_stage` builds two signed bundles, `fleet_stage` starts a real server
and real agent processes and rolls the bundles out, `summary` prints what happened.
"""
