"""Control loops that run on the agent, inside a safety envelope.

`pid.py` and `dosing.py` are pure decision logic: told the time and an input,
they answer what an output should do, and never touch the bus, so the same code
runs against the simulator, real chips and property-based tests. `config.py`
holds the configured loops and their hard limits; `runner.py` runs the loops on
the agent's actuators (docs/safety.md).
"""
