"""What every resolver of one request gets as ``info.context``: the caller, the limits, and batched reads.

The batched reads replace a dataloader (Strawberry's is asyncio-only; execution
here is synchronous under gevent): every entity and dashboard a resolver hands
out is registered here, and the first time one of them needs its metrics (or its
dashboard's tiles), those of all registered ones are read in one query. An
``entities { metrics }`` query over a page of entities costs two queries, not one
per entity.
"""

from app.services import dashboards, metrics


class EntityBatch:
    """Batched reads of the entities and dashboards one request shows, scoped to the caller's tenant."""

    def __init__(self, tenant_id):
        self.tenant_id = tenant_id
        self._metrics = {}  # entity id -> {name: {value, timestamp, seq}}
        self._metrics_wanted = set()
        self._dashboards = {}  # dashboard id -> dashboard dict with tiles, or None (not the tenant's)
        self._dashboards_wanted = set()

    def add_entity(self, entity_id, dashboard_id):
        """An entity the answer shows: its metrics and dashboard are read with the others'."""
        if entity_id not in self._metrics:
            self._metrics_wanted.add(entity_id)
        self.add_dashboard(dashboard_id)

    def add_dashboard(self, dashboard_id):
        """A dashboard the answer shows (None: none): its tiles are read with the others'."""
        if dashboard_id is not None and dashboard_id not in self._dashboards:
            self._dashboards_wanted.add(dashboard_id)

    def metrics_of(self, entity_id):
        """``{name: {value, timestamp, seq}}`` of the entity, read with those of every entity added so far."""
        if entity_id not in self._metrics:
            self._metrics_wanted.add(entity_id)
            self._metrics.update(metrics.current_metrics_by_entity(self.tenant_id, self._metrics_wanted))
            self._metrics_wanted.clear()
        return self._metrics[entity_id]

    def dashboard(self, dashboard_id):
        """The dashboard dict with tiles (None when the tenant has none such), read with every one added so far."""
        if dashboard_id is None:
            return None
        if dashboard_id not in self._dashboards:
            self._dashboards_wanted.add(dashboard_id)
            found = dashboards.dashboards_by_id(self.tenant_id, self._dashboards_wanted)
            self._dashboards.update({i: found.get(i) for i in self._dashboards_wanted})
            self._dashboards_wanted.clear()
        return self._dashboards[dashboard_id]

    def forget(self):
        """Drop what was read: a mutation may have changed it."""
        self._metrics.clear()
        self._dashboards.clear()


class RequestContext:
    """``info.context`` of one GraphQL request."""

    def __init__(self, request, response, caller, config, limits, introspection):
        self.request = request
        self.response = response  # the Flask response Strawberry fills in
        self.caller = caller  # app.auth.Principal
        self.config = config
        self.limits = limits  # app.graphql.limits.Limits
        self.introspection = introspection
        self.batch = EntityBatch(caller.tenant_id)
