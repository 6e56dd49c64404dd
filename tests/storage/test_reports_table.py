"""dynl2_reports: reports kept whole in the store, newest first, and the v1 -> v2 migration."""

from __future__ import annotations

import pytest
from sqlalchemy import text

import storage
from storage.schema import SCHEMA_VERSION
from tests.storage.legacy import build_legacy_store


def test_record_list_and_recover_reports(store):
    store.create_experiment("exp", {"a": 1})
    assert store.reports().empty
    with pytest.raises(storage.ReportNotFound, match="dynl2 report exp"):
        store.latest_report("exp")
    first = store.record_report("exp", "/tmp/a.html", {"verdict": "tie"}, "<html>1</html>")
    second = store.record_report("exp", "/tmp/b.html", {"verdict": "dynamic"}, "<p>2</p>" * 1000)
    assert second > first
    frame = store.reports("exp")
    assert list(frame["id"]) == [second, first]  # newest first
    assert frame.iloc[0]["summary"] == {"verdict": "dynamic"}
    assert "html" not in frame.columns  # listing does not drag every page along
    html, path = store.latest_report("exp")
    assert html == "<p>2</p>" * 1000 and path == "/tmp/b.html"
    with pytest.raises(storage.ExperimentNotFound):
        store.reports("nope")


def test_a_version_1_store_gains_the_reports_table(store_url):
    build_legacy_store(store_url, schema_version=1)  # as dynl2 wrote it before dynl2_reports
    with storage.open(store_url, create=False) as store:
        assert store.reports().empty  # read-only commands still work on the old store
    with storage.open(store_url) as store:
        store.create_experiment("exp", {})
        store.record_report("exp", "p", {}, "<html></html>")
        with store.engine.connect() as connection:
            version = connection.execute(
                text("SELECT value FROM dynl2_meta WHERE key = 'schema_version'")
            ).scalar()
    assert version == str(SCHEMA_VERSION)
