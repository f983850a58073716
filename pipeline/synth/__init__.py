"""Multi-turn synthesis: follow-up generators, response backends, per-turn checks.

The stage that drives them is `pipeline.stages.synth`.
"""
