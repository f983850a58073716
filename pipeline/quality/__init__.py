"""Quality filtering: vectorised per-message signals (signals.py) and the hard rules and soft
signals decided from them per conversation (rules.py). The quality stage
(pipeline/stages/quality.py) adapts them to shard folders."""
