"""Stand-alone consumer processes the peer benchmark (``bench_peers.py``) races."""
