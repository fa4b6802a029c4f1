"""Damage confinement: a session's policy (TOML over the daemon's defaults) and Policy.check.

model.py  the parsed policy, the facts of an action, a decision
parse.py  TOML -> validated tables -> Policy; errors name the key and its line
locate.py finds a key's line in TOML text
check.py  check(policy, facts, approval) and SessionPolicy (adds rate limits)
"""
