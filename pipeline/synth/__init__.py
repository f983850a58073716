"""Multi-turn synthesis (SPEC R6): follow-up generators, response backends, per-turn checks.

The stage that drives them is `pipeline.stages.synth`.
"""
