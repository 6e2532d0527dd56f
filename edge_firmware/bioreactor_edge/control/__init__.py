"""Control loops that run on the agent, inside a safety envelope.

Pure decision logic: each loop is told the time and its input, and answers with
what its actuator should do. It never touches the bus or the journal itself, so
the same code runs against the simulator, real chips and property-based tests.
"""
