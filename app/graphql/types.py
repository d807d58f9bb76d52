"""The GraphQL object and input types. Field names are camelCase on the wire, as in REST.

Objects are made from the dicts that app/serializers.py builds for REST
(``from_dict``), so a field is named and formatted the same in both APIs.
"""

from datetime import UTC, datetime
from typing import Annotated, NewType

import strawberry
from strawberry.scalars import JSON

from app.services import history
from app.validation import optional_timestamp, require_id

#: An integer of up to 64 bits, sent as a JSON number: change-log positions outgrow GraphQL's 32-bit Int.
BigInt = NewType("BigInt", int)


def _parse_big_int(value):
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise ValueError("BigInt must be an integer of at most 64 bits")
    return value


BIG_INT = strawberry.scalar(
    name="BigInt",
    description="An integer of up to 64 bits, as a JSON number (change-log positions).",
    serialize=int,
    parse_value=_parse_big_int,
)


@strawberry.type(description="The current value of one metric of an entity.")
class MetricValue:
    metric_name: str
    value: float
    timestamp: str = strawberry.field(description="ISO-8601 UTC with milliseconds, as recorded.")
    seq: BigInt = strawberry.field(description="The change-log position that set it.")


@strawberry.type(description="A raw history point.")
class HistoryPoint:
    t: str
    value: float
    seq: BigInt


@strawberry.type(description="A history bucket of `step` seconds starting at `t`.")
class HistoryBucket:
    t: str
    min: float
    max: float
    avg: float
    last: float | None
    count: int


@strawberry.type(description="Past values of one metric: raw `points` (paged by `next`), or `buckets` with a `step`.")
class History:
    entity_id: str
    metric_name: str
    step: int | None
    next: str | None = strawberry.field(description="The `cursor` of the next page of raw points, if any.")
    points: list[HistoryPoint]
    buckets: list[HistoryBucket]

    @classmethod
    def from_dict(cls, data):
        """From ``history.metric_history``'s answer."""
        step = data.get("step")
        points = data["points"]
        return cls(
            entity_id=data["entityId"],
            metric_name=data["metricName"],
            step=step,
            next=data.get("next"),
            points=[] if step is not None else [HistoryPoint(**p) for p in points],
            buckets=[HistoryBucket(**b) for b in points] if step is not None else [],
        )


@strawberry.type(description="One tile of a dashboard.")
class Tile:
    id: int
    position: int
    title: str
    metric_name: str
    kind: str = strawberry.field(description="number, gauge or line.")
    unit: str
    thresholds: JSON | None = strawberry.field(description='Named numbers, e.g. {"warning": 80}.')

    @classmethod
    def from_dict(cls, data):
        """From ``serializers.tile_to_dict``."""
        return cls(
            id=data["id"],
            position=data["position"],
            title=data["title"],
            metric_name=data["metricName"],
            kind=data["kind"],
            unit=data["unit"],
            thresholds=data["thresholds"],
        )


@strawberry.type(description="A dashboard layout; `version` grows by one with every layout change.")
class Dashboard:
    id: int
    name: str
    version: int
    known_tiles: strawberry.Private[list | None]

    @strawberry.field(description="Its tiles in order.")
    def tiles(self, info: strawberry.Info) -> list[Tile]:
        tiles = self.known_tiles
        if tiles is None:
            found = info.context.batch.dashboard(self.id)
            tiles = found["tiles"] if found else []
        return [Tile.from_dict(t) for t in tiles]

    @classmethod
    def from_dict(cls, data, batch):
        """From ``serializers.dashboard_to_dict`` (with or without tiles); ``batch`` reads missing tiles."""
        if "tiles" not in data:
            batch.add_dashboard(data["id"])
        return cls(id=data["id"], name=data["name"], version=data["version"], known_tiles=data.get("tiles"))


@strawberry.type(description="A thing a dashboard watches (an event, a venue, ...).")
class Entity:
    entity_id: str
    entity_type: str
    name: str
    dashboard_id: int | None

    @strawberry.field(description="The dashboard it shows, if any.")
    def dashboard(self, info: strawberry.Info) -> Dashboard | None:
        found = info.context.batch.dashboard(self.dashboard_id)
        return Dashboard.from_dict(found, info.context.batch) if found else None

    @strawberry.field(description="Its current values, by metric name.")
    def metrics(self, info: strawberry.Info) -> list[MetricValue]:
        values = info.context.batch.metrics_of(self.entity_id)
        return [MetricValue(metric_name=name, **value) for name, value in values.items()]

    @strawberry.field(
        description="Past values of one metric: raw points from `from` to `to` (default: the last hour), "
        "`limit` at a time (default 1000, at most 10000) after `cursor`; or buckets of `step` seconds."
    )
    def history(
        self,
        info: strawberry.Info,
        metric_name: str,
        from_: Annotated[str | None, strawberry.argument(name="from")] = None,
        to: str | None = None,
        step: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> History:
        caller = info.context.caller
        metric_name = require_id({"metricName": metric_name}, "metricName", info.context.config["MAX_ID_LENGTH"])
        given = {"from": from_, "to": to, "step": step, "limit": limit, "cursor": cursor}
        args = {name: str(value) for name, value in given.items() if value is not None}
        query = history.parse_history_query(args, optional_timestamp, datetime.now(UTC))
        return History.from_dict(history.metric_history(caller.tenant_id, self.entity_id, metric_name, query))

    @classmethod
    def from_dict(cls, data, batch):
        """From ``serializers.entity_to_dict``; registers it in ``batch`` for the batched reads."""
        batch.add_entity(data["entityId"], data["dashboardId"])
        return cls(
            entity_id=data["entityId"],
            entity_type=data["entityType"],
            name=data["name"],
            dashboard_id=data["dashboardId"],
        )


@strawberry.type(description="What `recordMetrics` recorded.")
class IngestResult:
    accepted: int
    last_seq: BigInt


@strawberry.type(description="A layout change, as subscribers get it in `dashboard:update`.")
class LayoutChange:
    action: str = strawberry.field(description="added, updated, removed or reordered.")
    version: int
    tile: Tile | None
    order: list[int] | None = strawberry.field(description="The tile ids in their new order (reordered).")

    @classmethod
    def from_dict(cls, data):
        """From ``serializers.layout_change``."""
        tile = data.get("tile")
        return cls(
            action=data["action"],
            version=data["version"],
            tile=Tile.from_dict(tile) if tile else None,
            order=data.get("order"),
        )


@strawberry.type(description="A deleted dashboard and the entities it was detached from.")
class DashboardDeletion:
    id: int
    detached: list[str]


@strawberry.type(description="An entity registered (`created`) or updated.")
class EntityRegistration:
    entity: Entity
    created: bool


@strawberry.input(description="One value to record (the fields of `POST /api/v1/metrics`).")
class MetricInput:
    entity_id: str
    metric_name: str
    value: float
    timestamp: str | None = None
    entity_type: str | None = strawberry.field(default=None, description="Registers an unknown entity of this type.")

    def payload(self):
        """The REST body of this metric."""
        return {
            "entityId": self.entity_id,
            "metricName": self.metric_name,
            "value": self.value,
            "timestamp": self.timestamp,
            "entityType": self.entity_type,
        }


@strawberry.input(description="A new tile.")
class TileInput:
    title: str
    metric_name: str
    kind: str
    unit: str | None = None
    thresholds: JSON | None = None

    def payload(self):
        """The REST body of this tile."""
        return {
            "title": self.title,
            "metricName": self.metric_name,
            "kind": self.kind,
            "unit": self.unit,
            "thresholds": self.thresholds,
        }


@strawberry.input(description="The fields of a tile to change; those left out stay.")
class TilePatch:
    title: str | None = strawberry.UNSET
    metric_name: str | None = strawberry.UNSET
    kind: str | None = strawberry.UNSET
    unit: str | None = strawberry.UNSET
    thresholds: JSON | None = strawberry.UNSET

    def payload(self):
        """The REST body of this change: only the fields given."""
        given = {
            "title": self.title,
            "metricName": self.metric_name,
            "kind": self.kind,
            "unit": self.unit,
            "thresholds": self.thresholds,
        }
        return {name: value for name, value in given.items() if value is not strawberry.UNSET}
