"""The schema: Query, Mutation and their types, with the request limits as an extension."""

import strawberry
from strawberry.schema.config import StrawberryConfig

from app.graphql.limits import QueryLimits
from app.graphql.resolvers import Mutation, Query
from app.graphql.types import BIG_INT, BigInt


class AnalyticsSchema(strawberry.Schema):
    """Strawberry's schema, leaving error logging to app/graphql/errors.py.

    Strawberry logs every error with its traceback, a client's typo included;
    ``errors.formatted`` logs only the unexpected ones.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checked_documents = {}  # what limits.QueryLimits found of each query text it checked

    def process_errors(self, errors, execution_context=None):
        """Log nothing here (see the class docstring)."""


def build_schema():
    """A new schema (one per app: nothing is built at import time)."""
    return AnalyticsSchema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(scalar_map={BigInt: BIG_INT}),
        extensions=[QueryLimits],
    )


def schema_sdl(schema=None):
    """The schema in GraphQL SDL, as docs/graphql.md shows it."""
    return (schema or build_schema()).as_str()
