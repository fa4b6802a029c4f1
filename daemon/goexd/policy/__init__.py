"""Damage confinement: the daemon's policy, a session's (which can only narrow it), and Policy.check.

model.py    the parsed policy, the facts of an action, a decision
parse.py    TOML -> validated tables -> Policy (the daemon's over defaults; a session's alone); errors name
            the key and its line
defaults.py the daemon's own layers (its egress.allowed_hosts setting, its policy file)
locate.py   finds a key's line in TOML text
check.py    check(policy, facts, approval) and SessionPolicy (both policies, the stricter answer; rate limits)
"""
