"""Mixing: mixture arithmetic (weights.py) and the validation hold-out plus the four SFT
strategies planned on row indices (plan.py). No shard I/O: the mix stage
(pipeline/stages/mix.py) builds the catalog the plan reads and copies the planned rows."""
