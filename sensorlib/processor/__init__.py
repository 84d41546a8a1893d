"""The stream processor: the consume-process-produce session and its health (``loop``), one
poll's transaction as a checkpoint object (``checkpoint``), poison isolation by halves
(``isolation``) and the warm-up history read on every assignment (``warmup``)."""
