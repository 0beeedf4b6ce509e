"""A small HTTP front for chDB (the ClickHouse engine in-process) that speaks enough of
ClickHouse's HTTP interface for the `clickhouse` Rust crate with schema validation on, for the
built-in /play and /dashboard pages, and for curl.

What it does:
  GET /ping, GET /                 -> "Ok."
  GET /play, GET /dashboard        -> the pages chDB ships inside its library (extracted once)
  POST/GET /?query=...             -> one query: `database`, `default_format`, `param_*`
                                      (also as multipart/form-data fields, as the crate sends
                                      them), any other URL argument is a setting for this query
  POST /?query=INSERT ... FORMAT F -> a streaming insert of the request body (chunked or not);
                                      a body cut short (a client killed mid-insert) cancels the
                                      insert, as ClickHouse does
Errors answer 500 with `X-ClickHouse-Exception-Code` and ClickHouse's message, which is what
the crate parses. chDB allows one statement at a time on a connection, so requests are
serialised by one lock; that is the adapter's limit, not ClickHouse's.

Usage: chdb_http.py --port N --path DATA_DIR [--host 127.0.0.1] [--pages DIR]
         [--dashboard-query SQL]
"""

import argparse
import base64
import email.parser
import email.policy
import json
import mmap
import os
import re
import signal
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import chdb

# URL arguments that are part of the protocol, not settings to apply.
PROTOCOL_ARGS = {
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "user", "password", "quota_key", "role",
    "buffer_size", "wait_end_of_query", "enable_http_compression", "http_zlib_compression_level",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "add_http_cors_header",
    "http_response_headers", "default_session_timeout",
}
INSERT_RE = re.compile(r"^\s*INSERT\b", re.IGNORECASE)
FORMAT_TAIL_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
CODE_RE = re.compile(r"Code: (\d+)")
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PAGE_TITLES = {
    "play": b"<title>ClickHouse Query</title>",
    "dashboard": b"<title>ClickHouse Dashboard</title>",
}


def extract_pages(dest):
    """Writes play.html and dashboard.html from the chDB library (ClickHouse compiles them in)
    into `dest`, once."""
    os.makedirs(dest, exist_ok=True)
    missing = [n for n in PAGE_TITLES if not os.path.exists(os.path.join(dest, n + ".html"))]
    if not missing:
        return
    lib = os.path.join(os.path.dirname(chdb.__file__), "_chdb.abi3.so")
    with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        for name in missing:
            at = m.find(PAGE_TITLES[name])
            start = m.rfind(b"<!DOCTYPE html>", 0, at)
            end = m.find(b"</html>", at)
            if at < 0 or start < 0 or end < 0:
                raise SystemExit(f"chdb_http: no {name} page inside {lib}")
            tmp = os.path.join(dest, name + ".html.tmp")
            with open(tmp, "wb") as out:
                out.write(m[start:end + len(b"</html>\n")])
            os.replace(tmp, os.path.join(dest, name + ".html"))


class Engine:
    """The one chDB connection and the lock that serialises it."""

    def __init__(self, path):
        self.conn = chdb.connect(path)
        self.lock = threading.Lock()
        self.database = "default"

    def use(self, database):
        if database != self.database:
            self.conn.query(f"USE {quote_ident(database)}")
            self.database = database

    def apply_settings(self, settings):
        applied = []
        for name, value in settings.items():
            if not SETTING_NAME_RE.match(name):
                raise ValueError(f"bad setting name {name!r}")
            self.conn.query(f"SET {name} = {quote_value(value)}")
            applied.append(name)
        return applied

    def reset_settings(self, names):
        for name in names:
            try:
                self.conn.query(f"SET {name} = DEFAULT")
            except Exception:  # a reset that fails leaves a harmless per-connection value
                pass


def quote_ident(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_value(value):
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chdb-http"

    def log_message(self, fmt, *args):  # quiet: the test logs hold what matters
        if os.environ.get("CHDB_HTTP_LOG"):
            sys.stderr.write("chdb_http: " + fmt % args + "\n")

    # ---------- plumbing ----------

    def reply(self, status, body, content_type="text/plain; charset=UTF-8", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, message, status=500):
        code = CODE_RE.search(message)
        code = code.group(1) if code else "1002"
        if not message.startswith("Code:"):
            message = f"Code: {code}. DB::Exception: {message}"
        self.reply(status, (message.rstrip() + "\n").encode(), headers={"X-ClickHouse-Exception-Code": code})

    def body_chunks(self):
        """Yields the request body in pieces; raises ConnectionError if it is cut short."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("body ended inside a chunk header")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(left, 1 << 20))
                    if not piece:
                        raise ConnectionError("body ended inside a chunk")
                    left -= len(piece)
                    yield piece
                self.rfile.readline(3)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                piece = self.rfile.read(min(left, 1 << 20))
                if not piece:
                    raise ConnectionError("body ended early")
                left -= len(piece)
                yield piece

    def body(self):
        return b"".join(self.body_chunks())

    # ---------- routes ----------

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/ping", "/") and "query" not in urllib.parse.parse_qs(url.query):
            return self.reply(200, b"Ok.\n")
        if url.path in ("/play", "/dashboard"):
            return self.page(url)
        return self.query(url, b"")

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        self.query(url, None)

    def page(self, url):
        name = url.path.strip("/")
        if name == "dashboard" and not url.query and self.server.dashboard_query:
            # Point the page at the shipped dashboards (a table the migrations fill) instead of
            # the server metrics of system.dashboards; the page reads its state from the hash.
            host = f"http://{self.headers.get('Host', 'localhost')}/"
            state = {"host": host, "user": "default", "queries": [], "params": {},
                     "search_query_": self.server.dashboard_query, "customized_": False}
            target = "/dashboard?shopflow=1#" + base64.b64encode(json.dumps(state).encode()).decode()
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(os.path.join(self.server.pages, name + ".html"), "rb") as f:
            self.reply(200, f.read(), "text/html; charset=UTF-8")

    def query(self, url, body):
        args = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        sql = next((v for k, v in args if k == "query"), "")
        params = {k[6:]: v for k, v in args if k.startswith("param_")}
        database = next((v for k, v in args if k == "database"), "default")
        fmt = next((v for k, v in args if k == "default_format"), "TabSeparated")
        if next((v for k, v in args if k == "decompress"), "0") == "1":
            self.body()
            return self.fail("Code: 48. DB::Exception: the chdb adapter takes uncompressed inserts only (client compression: none)", 400)
        settings = {k: v for k, v in args if k not in PROTOCOL_ARGS and not k.startswith("param_")}

        streaming = body is None and INSERT_RE.match(sql) is not None
        if body is None and not streaming:
            body = self.body()
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("multipart/form-data"):
                msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    value = part.get_payload(decode=True).decode()
                    if name == "query":
                        sql = (sql + "\n" + value) if sql else value
                    elif name and name.startswith("param_"):
                        params[name[6:]] = value
            elif body:
                sql = (sql + "\n" + body.decode()) if sql else body.decode()
        if not sql.strip():
            return self.reply(200, b"Ok.\n")

        engine = self.server.engine
        started = time.monotonic()
        with engine.lock:
            applied = []
            try:
                engine.use(database)
                applied = engine.apply_settings(settings)
                if streaming:
                    return self.insert(engine, sql, started)
                result = engine.conn.query(sql, fmt, params=params)
                data = result.bytes() if result is not None else b""
                summary = {"read_rows": str(result.rows_read() if result is not None else 0),
                           "read_bytes": str(result.bytes_read() if result is not None else 0),
                           "written_rows": "0", "written_bytes": "0",
                           "elapsed_ns": str(int((time.monotonic() - started) * 1e9))}
            except Exception as e:  # chDB raises ChdbError/RuntimeError with ClickHouse's text
                if os.environ.get("CHDB_HTTP_LOG"):
                    traceback.print_exc()
                return self.fail(str(e))
            finally:
                engine.reset_settings(applied)
        m = FORMAT_TAIL_RE.search(sql)
        out_fmt = m.group(1) if m else fmt
        self.reply(200, data, headers={"X-ClickHouse-Format": out_fmt,
                                       "X-ClickHouse-Summary": json.dumps(summary)})

    def insert(self, engine, sql, started):
        m = FORMAT_TAIL_RE.search(sql)
        fmt = m.group(1) if m else "TabSeparated"
        statement = sql[:m.start()] if m else sql
        inserter = engine.conn.send_insert(statement, fmt)
        try:
            for piece in self.body_chunks():
                inserter.append(piece)
        except BaseException as e:
            inserter.cancel()
            self.close_connection = True
            if isinstance(e, (ConnectionError, OSError)):
                return None  # the client is gone; nothing was committed
            raise
        res = inserter.finish()
        summary = {"read_rows": "0", "read_bytes": "0",
                   "written_rows": str(res.rows_written), "written_bytes": str(res.bytes_written),
                   "elapsed_ns": str(int((time.monotonic() - started) * 1e9))}
        self.reply(200, b"", headers={"X-ClickHouse-Summary": json.dumps(summary)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True, help="chDB data directory (persists across restarts)")
    ap.add_argument("--pages", default=os.path.expanduser("~/.cache/shopflow/chdb-pages"))
    ap.add_argument("--dashboard-query", default="SELECT title, query FROM shopflow.dashboards")
    a = ap.parse_args()
    extract_pages(a.pages)
    server = ThreadingHTTPServer((a.host, a.port), Handler)
    server.daemon_threads = True
    server.engine = Engine(a.path)
    server.pages = a.pages
    server.dashboard_query = a.dashboard_query

    def stop(*_):
        # shutdown() waits for serve_forever to return, so it runs on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"chdb_http: listening on {a.host}:{a.port}, data in {a.path}", flush=True)
    server.serve_forever()
    with server.engine.lock:
        server.engine.conn.close()


if __name__ == "__main__":
    main()
