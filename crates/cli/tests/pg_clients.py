"""Postgres clients against kpiflow's Postgres port (crates/cli/tests/pg_wire.rs).

psycopg 3 speaks the extended query protocol (a plain cursor, text and binary
results) and the simple one (ClientCursor). The script runs the query
sequence of Grafana's Postgres data source (version detection, TimescaleDB
probe, table and column browse, a $__timeFilter/$__timeGroup query as
Grafana expands it), compares a windowed query's rows with /api/sql's, and
checks that DDL and DML are refused on both paths. Any mismatch is an
AssertionError (exit 1); the last line is a JSON summary.

It also runs every query of the shipped Grafana dashboard
(dashboards/grafana/*.json) after expanding Grafana's macros and variables
the way Grafana does.

usage: python pg_clients.py PG_HOST PG_PORT HTTP_URL DASHBOARD_JSON
"""

import json
import os
import re
import subprocess
import sys
import urllib.request

import psycopg

host, port, http, dashboard = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conninfo = f"host={host} port={port} user=grafana dbname=kpiflow connect_timeout=10 sslmode=disable"
summary = {}


def api_sql(sql):
    request = urllib.request.Request(
        f"{http}/api/sql",
        data=json.dumps({"sql": sql}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert not body["truncated"], body
    return body["rows"]


def psql(*args):
    """psql (Debian's postgresql-client, the simple query protocol): its stdout."""
    done = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port),
         "-U", "analyst", "-d", "kpiflow", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10", "PGSSLMODE": "disable"},
    )
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


# Grafana's search_path membership subquery, twice in its table list.
SEARCH_PATH = r'''SELECT
                CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
              FROM
                generate_series(
                  array_lower(string_to_array(current_setting('search_path'),','),1),
                  array_upper(string_to_array(current_setting('search_path'),','),1)
                ) as i,
                string_to_array(current_setting('search_path'),',') s'''


def value(v):
    """A number (psql prints text) as a rounded float, anything else as text."""
    try:
        return round(float(v), 6)
    except (TypeError, ValueError):
        return str(v)


def normal(rows):
    """Rows as comparable tuples."""
    return [tuple(value(v) for v in row) for row in rows]


with psycopg.connect(conninfo, autocommit=True) as conn:
    # Grafana: "SELECT current_setting('server_version_num')::int/100" picks the dialect.
    version = conn.execute("SELECT current_setting('server_version_num')::int/100 AS version").fetchone()[0]
    assert int(version) >= 900, version
    summary["version"] = int(version)
    # Grafana: the TimescaleDB probe (no such extension here: no rows, no error).
    assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchall() == []

    # Grafana's query builder: the tables (its search_path membership test
    # is rewritten by datafusion-postgres, so every name comes qualified).
    tables = [r[0] for r in conn.execute(rf'''SELECT
        CASE WHEN
              quote_ident(table_schema) IN (
              {SEARCH_PATH}
              )
          THEN quote_ident(table_name)
          ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
        END AS "table"
        FROM information_schema.tables
        WHERE quote_ident(table_schema) NOT IN ('information_schema',
                                 'pg_catalog',
                                 '_timescaledb_cache',
                                 '_timescaledb_catalog',
                                 '_timescaledb_internal',
                                 '_timescaledb_config',
                                 'timescaledb_information',
                                 'timescaledb_experimental')
        ORDER BY CASE WHEN
              quote_ident(table_schema) IN (
              {SEARCH_PATH}
              ) THEN 0 ELSE 1 END, 1''').fetchall()]
    for expected in ("views.sales_by_channel_region", "raw.sales", "live.sales_by_channel_region"):
        assert expected in tables, (expected, tables)
    summary["tables"] = len(tables)
    # ... and the columns of the one picked.
    columns = conn.execute(
        """SELECT quote_ident(column_name) AS "column", data_type AS "type"
           FROM information_schema.columns
           WHERE quote_ident(table_schema) = 'views' AND quote_ident(table_name) = 'sales_by_channel_region'"""
    ).fetchall()
    names = [c[0] for c in columns]
    assert "window_start" in names and "net_revenue" in names, columns

    # The committed range now: final windows never change once committed,
    # so a query bounded by it answers the same on every path.
    lo, hi = conn.execute(
        "SELECT min(window_start), max(window_start) FROM views.sales_by_channel_region"
    ).fetchone()
    assert lo is not None and hi is not None, "no committed window yet"
    rfc3339 = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    # $__timeGroupAlias(window_start, '1m'), $__timeFilter(window_start), as Grafana expands them.
    series = f"""SELECT floor(extract(epoch from window_start)/60)*60 AS "time", channel,
               sum(net_revenue) AS revenue, sum(orders) AS orders
        FROM views.sales_by_channel_region
        WHERE window_start BETWEEN '{rfc3339(lo)}' AND '{rfc3339(hi)}'
        GROUP BY 1, 2 ORDER BY 1, 2"""
    extended = conn.execute(series).fetchall()
    binary = conn.cursor(binary=True).execute(series).fetchall()
    simple = psycopg.ClientCursor(conn).execute(series).fetchall()
    http_rows = api_sql(series)
    assert len(extended) > 0, "no rows in the committed range"
    assert normal(extended) == normal(http_rows), (extended[:3], http_rows[:3])
    assert normal(binary) == normal(extended), (binary[:3], extended[:3])
    assert normal(simple) == normal(extended), (simple[:3], extended[:3])
    summary["series_rows"] = len(extended)
    # psql: the views listed, the same rows.
    listed = psql("-c", r"\dt views.*")
    for view in ("sales_by_channel_region", "top_skus_5min", "production_vs_sales_hourly"):
        assert f"views|{view}|table" in listed, (view, listed)
    from_psql = [line.split("|") for line in psql("-c", series).splitlines() if line]
    assert normal(from_psql) == normal(extended), (from_psql[:3], extended[:3])
    # A parameter, as pgx sends Grafana's variables.
    one = conn.execute(
        "SELECT count(*) FROM views.sales_by_channel_region WHERE channel = %s", ("online",)
    ).fetchone()[0]
    assert one > 0, one

    # Writes are refused on both paths, with SQLSTATE 25006 and a reason.
    for statement in (
        "CREATE TABLE t (a INT)",
        "INSERT INTO views.sales_by_channel_region (channel) VALUES ('x')",
        "DROP TABLE views.sales_by_channel_region",
        "SET datafusion.execution.batch_size = 1",
    ):
        for path, cursor in (("extended", conn.cursor()), ("simple", psycopg.ClientCursor(conn))):
            try:
                cursor.execute(statement)
            except psycopg.Error as e:
                assert e.sqlstate == "25006", (path, statement, e.sqlstate, str(e))
                assert "refused" in str(e), (path, statement, str(e))
            else:
                raise AssertionError(f"{path} protocol: {statement} passed")
    summary["refused"] = "ok"

    # The shipped Grafana dashboard: its variable query, then each panel's
    # query with $__timeGroupAlias, $__timeFilter and $channel expanded.
    with open(dashboard) as f:
        board = json.load(f)
    frm, to = rfc3339(lo), rfc3339(hi)
    variables = {}
    for var in board["templating"]["list"]:
        values = [r[0] for r in conn.execute(var["query"]).fetchall()]
        assert values, (var["name"], "no values")
        variables[var["name"]] = ",".join("'" + v.replace("'", "''") + "'" for v in values)

    def interval(text):
        n, unit = int(text[:-1]), text[-1]
        return n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]

    def expand(sql):
        sql = re.sub(r"\$__timeGroupAlias\((\w+),\s*'(\w+)'\)",
                     lambda m: f'floor(extract(epoch from {m[1]})/{interval(m[2])})*{interval(m[2])} AS "time"', sql)
        sql = re.sub(r"\$__timeFilter\((\w+)\)", lambda m: f"{m[1]} BETWEEN '{frm}' AND '{to}'", sql)
        for name, value in variables.items():
            sql = sql.replace(f"${name}", value)
        assert "$" not in sql, sql
        return sql

    panels = 0
    for panel in board["panels"]:
        for target in panel["targets"]:
            rows = conn.execute(expand(target["rawSql"])).fetchall()
            # The per-minute view has committed windows in the range by now;
            # an hourly one may not have closed its first hour yet.
            if "views.sales_by_channel_region" in target["rawSql"]:
                assert rows, (panel["title"], "no rows")
            panels += 1
    summary["dashboard_queries"] = panels
    # The connection still answers after the refusals.
    assert conn.execute("SELECT 1").fetchone()[0] == 1

print(json.dumps(summary))
