"""The orchestration layer, at the end of the chain: the outer loops that string the stages together
(the demo, collect → train → evaluate, online Dreamer, policy search, the driver side of ranking) and
Ray start-up. The stages below know nothing of Ray; they are called from here."""
