"""Token-importance scores as pure tensor functions: exact attention mass (``exact``) and
SimHash collisions of keys (``lsh``). ``laserkv.selection`` turns them into kept sets."""
