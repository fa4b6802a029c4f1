# Fixtures of the real services some integration tests run against (used by name).
from tests.services import oauth_server, oauth_server_short_tokens  # noqa: F401
