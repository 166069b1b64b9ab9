from tests.http.conftest import server, shared_server  # noqa: F401  (the same real servers)
