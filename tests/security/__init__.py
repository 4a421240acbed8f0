"""What carewire promises against abuse, one file per promise, each tested against a real server.

Read the module docstrings in order: they are the list of what an attacker or a careless client
cannot do.
"""
