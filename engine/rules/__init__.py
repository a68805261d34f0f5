"""The pure rules: the workflow model, its events, the state machine and its policies.

Nothing here reads a clock, the environment or the machine, starts a thread
or a process: time, randomness and readings enter as values. Everything above
(engine.input, actors, engine.telemetry, the facade, the CLI) builds on it.
"""
