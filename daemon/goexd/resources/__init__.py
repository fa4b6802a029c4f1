"""Resource managers (domain/resource.py ResourceManager), one package per kind: fs/, sqlite/, postgres/,
http/, each registering its (kind, strategy) factories through registry.py; kinds.py lists the packages.
Shared by several kinds: host_paths.py (what no resource may name), outcomes.py (crash outcome markers of the
inverse strategy), sql_reads.py (read-only SQL resolved at once)."""
