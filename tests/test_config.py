"""Settings read from the environment: durations (retention, history window)."""

import pytest

from testkit import server_env
from tests.conftest import app_from_env


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800), (" 1.5h ", 5400), ("400D", 400 * 86400)],
)
def test_durations_take_seconds_or_a_unit(tmp_path, raw, seconds):
    assert app_from_env(server_env(tmp_path, CHANGE_LOG_RETENTION=raw)).config["CHANGE_LOG_RETENTION"] == seconds


@pytest.mark.parametrize("raw", ["7 days", "d", "-1h", "0", "inf", "nan", "1w"])
def test_a_duration_that_cannot_work_stops_the_process(tmp_path, raw):
    with pytest.raises(ValueError, match="HISTORY_RETENTION"):
        app_from_env(server_env(tmp_path, HISTORY_RETENTION=raw))


def test_defaults(tmp_path):
    config = app_from_env(server_env(tmp_path)).config
    assert (config["HISTORY_RETENTION"], config["ROLLUP_RETENTION"], config["CHANGE_LOG_RETENTION"]) == (
        7 * 86400,
        400 * 86400,
        86400,
    )
    assert (config["RETENTION_INTERVAL"], config["HISTORY_WINDOW"], config["HISTORY_POINTS"]) == (60, 3600, 120)
