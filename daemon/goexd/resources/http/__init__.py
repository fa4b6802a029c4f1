"""The http kind: a REST service. kind.py registers it; resource.py is its manager (inverse and confine);
send.py talks to the service; rules*.py and rule_sets/*.toml derive inverse calls; trial.py tries a pair on a
staging copy."""
