"""Abuse limits of the GraphQL endpoint and the shape of its errors.

- Length: a query longer than QUERY_MAX_LENGTH characters is refused before parsing (and the
  parser stops after a token budget).
- Depth (strawberry's QueryDepthLimiter), aliases (MaxAliasesLimiter).
- Cost: `query_cost()` counts the objects a query may return, multiplying each paged field's
  children by its `first` (variables resolved) and each unpaged list's by `LIST_FACTOR`.
- Page size: `first` must be 1..QUERY_MAX_PAGE_SIZE (checked with the cost, and again by the
  resolvers).
- Introspection is refused unless ENV=local.
- Errors: only `QueryError` messages and GraphQL's own syntax/validation messages reach the
  client; anything else (a database error with SQL in it, a bug) becomes "internal error", and
  the log keeps the error class only. Responses never carry stack traces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from exchange.query.settings import QuerySettings

LIST_FACTOR = 5
"""Assumed length of a list without pages (a subject's patients, its sources, a fact's codings)."""
INTERNAL = "internal error"


class QueryError(Exception):
    """An error whose message is meant for the client (no values from storage, no SQL)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.extensions = {"code": code}


def page_size(first: int | None, default: int, maximum: int) -> int:
    """The effective `first`; QueryError outside 1..maximum."""
    size = default if first is None else first
    if size < 1 or size > maximum:
        raise QueryError(f"`first` must be between 1 and {maximum}", "PAGE_SIZE")
    return size


def field_kinds(schema: GraphQLSchema) -> dict[str, str]:
    """Field name → 'paged' (takes `first`) or 'list' (an unpaged list), from the schema."""
    kinds: dict[str, str] = {}
    for gtype in schema.type_map.values():
        if not isinstance(gtype, GraphQLObjectType) or gtype.name.startswith("__"):
            continue
        for name, field in gtype.fields.items():
            inner = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if "first" in field.args:
                kinds[name] = "paged"
            elif name == "edges":
                continue  # a connection's page: its `first` already multiplies
            elif isinstance(inner, GraphQLList) and kinds.get(name) != "paged":
                kinds[name] = "list"
    return kinds


def query_cost(
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    kinds: Mapping[str, str],
    *,
    default_page: int,
    max_page: int,
) -> int:
    """Objects the operation may return at most; QueryError for a `first` outside 1..max_page."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if len(operations) != 1:
        return 0  # graphql-core reports the missing or ambiguous operation
    values = dict(variables or {})

    def first_of(field: FieldNode) -> int:
        for arg in field.arguments or ():
            if arg.name.value != "first":
                continue
            if isinstance(arg.value, IntValueNode):
                return page_size(int(arg.value.value), default_page, max_page)
            if isinstance(arg.value, VariableNode):
                value = values.get(arg.value.name.value)
                return page_size(value if isinstance(value, int) else None, default_page, max_page)
        return default_page

    def fields(selection_set: SelectionSetNode, seen: frozenset[str]) -> Iterator[tuple[FieldNode, frozenset[str]]]:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection, seen
            elif isinstance(selection, InlineFragmentNode):
                yield from fields(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:  # cycles are a validation error anyway
                    yield from fields(fragments[name].selection_set, seen | {name})

    def cost(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
        if selection_set is None:
            return 0
        total = 0
        for field, inner in fields(selection_set, seen):
            if field.name.value.startswith("__"):
                continue
            kind = kinds.get(field.name.value)
            factor = first_of(field) if kind == "paged" else LIST_FACTOR if kind == "list" else 1
            total += 1 + factor * cost(field.selection_set, inner)
        return total

    return cost(operations[0].selection_set, frozenset())


class QueryLimits(SchemaExtension):
    """Query length before parsing; cost and page sizes before execution."""

    def __init__(self, settings: QuerySettings, kinds: Mapping[str, str]) -> None:
        self.settings = settings
        self.kinds = kinds

    def on_parse(self) -> Iterator[None]:
        query = self.execution_context.query or ""
        if len(query) > self.settings.query_max_length:
            raise GraphQLError(
                f"query is longer than {self.settings.query_max_length} characters",
                extensions={"code": "QUERY_TOO_LONG"},
            )
        yield

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None:
            try:
                cost = query_cost(
                    ctx.graphql_document,
                    ctx.operation_name,
                    ctx.variables,
                    self.kinds,
                    default_page=self.settings.query_default_page_size,
                    max_page=self.settings.query_max_page_size,
                )
            except QueryError as exc:
                raise GraphQLError(str(exc), extensions=exc.extensions) from None
            if cost > self.settings.query_max_cost:
                raise GraphQLError(
                    f"query cost {cost} exceeds the limit of {self.settings.query_max_cost}",
                    extensions={"code": "QUERY_TOO_COSTLY"},
                )
        yield


def client_safe(error: GraphQLError) -> bool:
    """True when an error may reach the client as is (ours, or GraphQL's own validation)."""
    original = error.original_error
    return original is None or isinstance(original, QueryError | GraphQLError)


def extensions(settings: QuerySettings, kinds: Mapping[str, str]) -> list[Callable[[], SchemaExtension]]:
    """Factories of the extensions enforcing the limits (strawberry builds them per operation).

    `kinds` is read at each operation, so the caller may fill it from the built schema.
    """
    factories: list[Callable[[], SchemaExtension]] = [
        lambda: QueryLimits(settings, kinds),
        lambda: MaxTokensLimiter(max_token_count=max(1000, settings.query_max_length // 2)),
        lambda: QueryDepthLimiter(max_depth=settings.query_max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.query_max_aliases),
        lambda: MaskErrors(should_mask_error=lambda e: not client_safe(e), error_message=INTERNAL),
    ]
    if not settings.introspection:
        factories.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return factories
