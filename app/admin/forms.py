"""The admin page's forms. Flask-WTF adds the CSRF token; the rules live in app/services and app/validation.py.

The forms only convert types. Each form can put a service message on the field it
names (``name must not be empty`` goes under Name), since the services and the
REST API name fields as the API does.
"""

from flask_wtf import FlaskForm
from wtforms import FloatField, HiddenField, IntegerField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, InputRequired, Optional, StopValidation
from wtforms.widgets import HiddenInput

from app.services.dashboards import TILE_KINDS


class SignInForm(FlaskForm):
    """Paste a JWT; it is verified exactly as the REST API verifies a Bearer token."""

    token = TextAreaField("Access token (JWT)")


class PlainForm(FlaskForm):
    """A form that carries nothing but its CSRF token (dev sign-in, sign-out)."""


class ServiceForm(FlaskForm):
    """A form whose fields the services name by their API names (``API_FIELDS``: API name -> form field)."""

    API_FIELDS = {}

    def attach_error(self, message):
        """Put a service message on the field it names (``metricName must ...`` goes to Metric name).

        Returns False when it names no field of this form.
        """
        name, _, rest = message.partition(" ")
        field = getattr(self, self.API_FIELDS.get(name, ""), None)
        if field is None:
            return False
        field.errors = [*field.errors, f"{field.label.text} {rest}"]
        return True


class VersionedForm(ServiceForm):
    """A change to a dashboard, made against the version the admin saw."""

    expected_version = IntegerField(widget=HiddenInput(), validators=[InputRequired()])

    def show_version(self, version):
        """Render ``version`` in the form from now on, also when the form was submitted with another.

        WTForms renders a submitted field's raw input, not the ``data`` a view sets:
        after a refused save, the page must carry the current version, so that saving
        again is a decision made with the current tiles in view.
        """
        self.expected_version.data = version
        self.expected_version.raw_data = [str(version)]


class TileForm(VersionedForm):
    """Add or edit a tile. Only type conversion happens here; the service checks the values."""

    title = StringField("Title")
    metric_name = StringField("Metric name")
    kind = SelectField("Kind", choices=[SelectChoice(k, k.capitalize()) for k in TILE_KINDS], validate_choice=False)
    unit = StringField("Unit")
    warning = FloatField("Warning at", validators=[Optional()])
    critical = FloatField("Critical at", validators=[Optional()])

    #: The service names fields as the API does; the message goes next to the form field.
    API_FIELDS = {
        "title": "title",
        "metricName": "metric_name",
        "kind": "kind",
        "unit": "unit",
        "thresholds": "warning",
        "warning": "warning",
        "critical": "critical",
    }

    def fill_from(self, tile):
        """Show an existing tile's values."""
        thresholds = tile.get("thresholds") or {}
        self.title.data = tile["title"]
        self.metric_name.data = tile["metricName"]
        self.kind.data = tile["kind"]
        self.unit.data = tile["unit"]
        self.warning.data = thresholds.get("warning")
        self.critical.data = thresholds.get("critical")

    def payload(self, current_thresholds=None):
        """The tile as the REST API would receive it; thresholds other than warning/critical are kept."""
        thresholds = dict(current_thresholds or {})
        for name in ("warning", "critical"):
            value = getattr(self, name).data
            if value is None:
                thresholds.pop(name, None)
            else:
                thresholds[name] = value
        return {
            "title": self.title.data or "",
            "metricName": self.metric_name.data or "",
            "kind": self.kind.data,
            "unit": self.unit.data or "",
            "thresholds": thresholds or None,
        }


class MoveTileForm(VersionedForm):
    """Move a tile one place up or down."""

    direction = HiddenField(validators=[AnyOf(["up", "down"])])


class ReorderForm(VersionedForm):
    """The whole order at once, as comma-separated tile ids (sent by drag and drop)."""

    tile_ids = HiddenField(validators=[InputRequired()])

    def ids(self):
        """The tile ids, or None when the field is not a list of integers."""
        try:
            return [int(part) for part in self.tile_ids.data.split(",")]
        except ValueError:
            return None


# --- dashboards and entities ---------------------------------------------------------------------------------------


def dashboard_choice(value):
    """A dashboard picked in a select: None for "" (none), else its id; ValueError for anything else.

    Whether the tenant has that dashboard is the service's to say (NOT_FOUND).
    """
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit():
        raise ValueError(value)
    return int(value)


def dashboard_label(dashboard):
    """How a select names a dashboard: names need not be unique, ids are."""
    return f"{dashboard['name']} (#{dashboard['id']})"


def dashboard_choices(dashboards, none_label, prefix=""):
    """Select options: ``none_label`` (value "") first, then the tenant's dashboards (``prefix`` + label)."""
    return [
        SelectChoice("", none_label),
        *(SelectChoice(str(d["id"]), prefix + dashboard_label(d)) for d in dashboards),
    ]


class Submitted:
    """The field must be in the submitted form, even empty (a select whose empty option means "none")."""

    def __call__(self, form, field):
        if not field.raw_data:
            raise StopValidation("This field is required.")


def _dashboard_field(label, validators=()):
    return SelectField(
        label,
        coerce=dashboard_choice,
        validate_choice=False,
        validators=list(validators),
        invalid_value_message="Choose a dashboard from the list.",
    )


class DashboardForm(ServiceForm):
    """Create a dashboard: a name, and empty or with a copy of another dashboard's tiles."""

    name = StringField("Name")
    copy_of = _dashboard_field("Tiles")

    API_FIELDS = {"name": "name", "copyOf": "copy_of"}

    def with_dashboards(self, dashboards):
        """Offer the tenant's ``dashboards`` to copy from."""
        self.copy_of.choices = dashboard_choices(dashboards, "Empty: no tiles", prefix="Copy of ")
        return self


class RenameDashboardForm(VersionedForm):
    """Rename a dashboard, against the version the admin saw."""

    name = StringField("Name")

    API_FIELDS = {"name": "name"}


class EntityForm(ServiceForm):
    """Register an entity: id, type, optional name and dashboard.

    An entity that already exists is updated, as ``PUT /api/v1/entities/<id>``
    does: an empty name or dashboard keeps what it has.
    """

    entity_id = StringField("Entity id")
    entity_type = SelectField("Type", validate_choice=False)
    entity_name = StringField("Name")
    dashboard_id = _dashboard_field("Dashboard")

    API_FIELDS = {
        "entityId": "entity_id",
        "entityType": "entity_type",
        "name": "entity_name",
        "dashboardId": "dashboard_id",
    }

    def with_choices(self, entity_types, dashboards):
        """Offer the configured ``entity_types`` and the tenant's ``dashboards``."""
        self.entity_type.choices = [SelectChoice(t, t) for t in entity_types]
        self.dashboard_id.choices = dashboard_choices(dashboards, "No dashboard")
        return self

    def payload(self):
        """The registration as the REST API would receive it; fields left empty are absent."""
        payload = {"entityId": self.entity_id.data or "", "entityType": self.entity_type.data}
        if self.entity_name.data:
            payload["name"] = self.entity_name.data
        if self.dashboard_id.data is not None:
            payload["dashboardId"] = self.dashboard_id.data
        return payload


class EntityDashboardForm(FlaskForm):
    """Choose the dashboard an entity shows, or none (the empty option)."""

    dashboard_id = _dashboard_field("Dashboard", [Submitted()])
