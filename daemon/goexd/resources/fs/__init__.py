"""The fs kind: a workspace directory. kind.py registers it; versioned.py (snapshots) and inverse.py (tested
inverse commands) are its strategies; trial.py tries a pair on an overlay; access, cwd, links, xattrs are what
only a workspace needs (unwritable entries, the working dir, hard links, extended attributes)."""
