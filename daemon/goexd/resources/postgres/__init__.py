"""The postgres kind. kind.py registers it; transaction.py, inverse.py and clone.py are its strategies; run.py
holds connections and runs scripts; reads.py resolves read-only scripts at once; outcomes.py settles what a
crash left in doubt (resources/outcomes.py)."""
