"""Refusing a query before it runs: its depth, its aliases and its estimated cost, from the document alone.

One walk over the parsed document computes all three, visiting each fragment once
per place it can stand (memoised), so a document whose fragments spread each other
twice over and over costs its length to check, not the size it expands to. It runs
before graphql-core's validation (``QueryLimits.on_validate``), whose rules would
walk such a document whole; a refused document is not validated further.

The cost estimates how many values the answer may hold: every field counts 1,
times the items of every list around it. A list's items are its ``limit`` argument
when the query gives it as a number, else the most it may be (a variable counts
as the most), or a nominal size for lists that take no ``limit``.
"""

from dataclasses import dataclass

from graphql import GraphQLError, get_named_type, get_nullable_type, is_list_type, is_object_type
from graphql.language import FieldNode, FragmentSpreadNode, InlineFragmentNode, IntValueNode, OperationType
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from app.services import history

#: Items assumed for a list that takes no ``limit`` (an entity's metrics, a dashboard's tiles, ...).
NOMINAL_LIST = 10
#: What one history read adds to the cost on top of its points: a query of its own.
HISTORY_COST = 10
#: Fields whose items are their ``limit`` argument, at most the page size (GRAPHQL_MAX_PAGE).
PAGED = {("Query", "entities"), ("Query", "dashboards")}
#: Fields whose items are the enclosing history read's ``limit`` (raw points) or, for buckets, the same estimate.
HISTORY_ITEMS = {("History", "points"), ("History", "buckets")}


@dataclass(frozen=True)
class Limits:
    """The limits of one request (from GRAPHQL_* of the configuration)."""

    max_depth: int
    max_aliases: int
    max_cost: int
    max_page: int


@dataclass
class Measure:
    """Depth, aliases and cost of a selection (a field at the top counts depth 1)."""

    depth: int = 0
    aliases: int = 0
    cost: int = 0


def _items(field, name, default, most):
    """The items a list argument ``name`` asks for: ``default`` when absent, ``most`` when not a number literal."""
    for argument in field.arguments or ():
        if argument.name.value == name:
            if isinstance(argument.value, IntValueNode):
                return max(0, min(int(argument.value.value), most))
            return most  # a variable (its value is not known while validating), or a wrong type
    return default


class _Walk:
    def __init__(self, schema, document, limits):
        self.schema = schema
        self.limits = limits
        self.fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}
        self.memo = {}
        self.visiting = set()

    def selection_set(self, selection_set, parent, items):
        """Measure of one selection set under ``parent`` (a GraphQL object type); ``items`` of enclosing history."""
        total = Measure()
        if selection_set is None or parent is None:
            return total
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                part = self.field(selection, parent, items)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                part = self.selection_set(selection.selection_set, target if is_object_type(target) else None, items)
            elif isinstance(selection, FragmentSpreadNode):
                part = self.fragment(selection.name.value, items)
            else:  # pragma: no cover (the parser makes no other selection)
                continue
            total.depth = max(total.depth, part.depth)
            total.aliases += part.aliases
            total.cost += part.cost
        return total

    def fragment(self, name, items):
        key = (name, items)
        if key in self.memo:
            return self.memo[key]
        definition = self.fragments.get(name)
        if definition is None or name in self.visiting:  # unknown or cyclic: validation reports it
            return Measure()
        self.visiting.add(name)
        target = self.schema.get_type(definition.type_condition.name.value)
        measure = self.selection_set(definition.selection_set, target if is_object_type(target) else None, items)
        self.visiting.discard(name)
        self.memo[key] = measure
        return measure

    def field(self, node, parent, items):
        name = node.name.value
        aliases = 1 if node.alias else 0
        if name.startswith("__"):  # introspection has its own switch (GRAPHQL_INTROSPECTION)
            return Measure(1, aliases, 1)
        definition = parent.fields.get(name)
        if definition is None:  # validation reports it
            return Measure(1, aliases, 1)
        named = get_named_type(definition.type)
        child_type = named if is_object_type(named) else None
        size, extra, child_items = 1, 0, items
        key = (parent.name, name)
        if key in PAGED:
            size = _items(node, "limit", self.limits.max_page, self.limits.max_page)
        elif key == ("Entity", "history"):
            extra = HISTORY_COST
            child_items = _items(node, "limit", history.DEFAULT_LIMIT, history.MAX_LIMIT)
        elif key in HISTORY_ITEMS:
            size = items
        elif is_list_type(get_nullable_type(definition.type)):
            size = NOMINAL_LIST
        inner = self.selection_set(node.selection_set, child_type, child_items)
        return Measure(1 + inner.depth, aliases + inner.aliases, 1 + extra + size * inner.cost)


def measure(schema, document, limits):
    """Return ``[(operation name, Measure)]`` for each operation of ``document`` (parsed, not yet validated)."""
    walk = _Walk(schema, document, limits)
    roots = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }
    results = []
    for definition in document.definitions:
        if definition.kind == "operation_definition":
            name = definition.name.value if definition.name else "anonymous"
            results.append((name, walk.selection_set(definition.selection_set, roots[definition.operation], 1)))
    return results


def refusals(schema, document, limits):
    """The GraphQLErrors of the operations of ``document`` that pass a limit (empty: it may run)."""
    found = []
    for name, measured in measure(schema, document, limits):
        if measured.depth > limits.max_depth:
            found.append(f"operation {name} is {measured.depth} fields deep; the limit is {limits.max_depth}")
        if measured.aliases > limits.max_aliases:
            found.append(f"operation {name} uses {measured.aliases} aliases; the limit is {limits.max_aliases}")
        if measured.cost > limits.max_cost:
            found.append(f"operation {name} costs an estimated {measured.cost}; the limit is {limits.max_cost}")
    return [GraphQLError(message) for message in found]


#: Checked documents remembered (their query text, the introspection switch and the limits as the key): a
#: dashboard sends the same few queries again and again, and graphql-core's validation is about half of what
#: answering one costs. Bounded, so that distinct query texts cannot grow it (each at most GRAPHQL_MAX_QUERY_LENGTH).
CHECKED_KEPT = 256


class QueryLimits(SchemaExtension):
    """Schema extension: refuse a document over its request's ``Limits`` before validation, apply the
    request's introspection switch (the context's ``limits`` and ``introspection``), and validate it,
    remembering the outcome for the next request of the same query text."""

    def on_validate(self):
        execution = self.execution_context
        context = execution.context
        if not context.introspection:
            execution.validation_rules = (*execution.validation_rules, NoSchemaIntrospectionCustomRule)
        document = execution.graphql_document
        if document is not None and execution.pre_execution_errors is None:
            execution.pre_execution_errors = checked(
                execution.schema.checked_documents,
                (execution.query, context.introspection, context.limits),
                execution.schema._schema,
                document,
                execution.validation_rules,
            )
        yield


def checked(kept, key, schema, document, rules):
    """The errors of ``document`` (empty: it may run): refusals by its limits first, else graphql-core's rules.

    ``kept`` (a dict, the schema's) remembers them by ``key`` (query text, introspection switch, limits),
    the oldest forgotten past CHECKED_KEPT.
    """
    found = kept.get(key)
    if found is None:
        found = refusals(schema, document, key[2]) or validate_document(schema, document, rules)
        if len(kept) >= CHECKED_KEPT:
            kept.pop(next(iter(kept)))
        kept[key] = found
    return list(found)
