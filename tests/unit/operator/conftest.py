import pytest

from exchange_operator.builders import Meta
from exchange_operator.spec import parse_spec


@pytest.fixture
def meta():
    return Meta(name="demo", namespace="health")


@pytest.fixture
def spec():
    return parse_spec({})


@pytest.fixture
def external_spec():
    return parse_spec(
        {
            "engines": {
                "postgres": {"mode": "external", "secretRef": {"name": "pg"}},
                "kafka": {"mode": "external", "secretRef": {"name": "kafka"}},
                "s3": {"mode": "external", "secretRef": {"name": "s3"}},
            },
            "tokenization": {"secretRef": {"name": "tok", "key": "k"}},
        }
    )
