"""De-duplication: MinHash signatures and LSH (minhash.py), exact / prefix keys and the keep
score (keys.py), SemDeDup pairs over embeddings (semantic.py). No shard I/O: the dedup stage
(pipeline/stages/dedup.py) feeds these from shard folders."""
