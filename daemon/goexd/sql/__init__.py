"""SQL scripts, pure functions only: splitting with real parsers and classifying statements.

    split(script, dialect) -> list[str]                 split.py
    classify(statement, dialect) -> Classified          classify.py
    classify_script(script, dialect) -> list[Classified]

PostgreSQL goes through pglast (PostgreSQL's parser); SQLite through sqlglot's tokenizer and
tree, with SQLite's own parser judging syntax (sqlite_check.py).
"""

from goexd.sql.classify import classify, classify_script
from goexd.sql.model import SQL_FIELD, Classified, Dialect, StatementClass
from goexd.sql.split import split

__all__ = ["SQL_FIELD", "Classified", "Dialect", "StatementClass", "classify", "classify_script", "split"]
