"""Shared pytest plugins: the real engines (session scope), the local JWKS issuer, and log
reporting of engines when a test fails."""

pytest_plugins = [
    "exchange_devtools.fixtures.report",
    "exchange_devtools.fixtures.engines",
    "exchange_devtools.fixtures.kube",
    "exchange_devtools.fixtures.kube_node",
    "exchange_devtools.fixtures.jwks",
]
