"""strawberry's FastAPI router, with what it does not do for a hostile request body.

- The body is parsed by orjson and must be a JSON object (or a list, refused as a batch since
  batching is off): strawberry took `null`, a string or a number for a request and failed on it
  with a 500.
- strawberry answers a request it cannot take (400 for a body that is not a GraphQL request,
  415 for a media type) in text/plain; here it is problem+json like every other error, with a
  GraphQL `errors` list carrying the same message, so a GraphQL client finds it where it looks.
"""

from __future__ import annotations

from typing import Any

import orjson
from cross_web import HTTPException
from fastapi import Request
from strawberry.fastapi import GraphQLRouter
from strawberry.types.unset import UNSET

from exchange.core.http import problem_response


class QueryRouter(GraphQLRouter[Any, None]):
    def decode_json(self, data: str | bytes) -> object:
        document = orjson.loads(data)  # its JSONDecodeError is json's: strawberry answers 400
        if not isinstance(document, dict | list):
            raise HTTPException(400, "the body must be a JSON object: a GraphQL request")
        return document

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:  # type: ignore[override]
        try:
            return await super().run(request, context=context, root_value=root_value)
        except HTTPException as exc:
            path = request.url.path if isinstance(request, Request) else None
            errors = [{"message": exc.reason}]
            return problem_response(exc.status_code, exc.reason, extra={"errors": errors}, instance=path)
