"""Sonarr/Radarr v3 API use: sans-IO repair plans (plan.py) and their HTTP driver
(client.py); the repair loop itself is altmount.ops.repair."""
