"""The admin page's forms. Flask-WTF adds the CSRF token; the tile rules live in app/services/dashboards.py."""

from flask_wtf import FlaskForm
from wtforms import FloatField, HiddenField, IntegerField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, InputRequired, Optional
from wtforms.widgets import HiddenInput

from app.services.dashboards import TILE_KINDS


class SignInForm(FlaskForm):
    """Paste a JWT; it is verified exactly as the REST API verifies a Bearer token."""

    token = TextAreaField("Access token (JWT)")


class PlainForm(FlaskForm):
    """A form that carries nothing but its CSRF token (dev sign-in, sign-out)."""


class VersionedForm(FlaskForm):
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
