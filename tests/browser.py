"""Headless Chromium for tests: render a local HTML file, return its DOM after scripts ran and every URL
the page asked the network for. All host names resolve to nothing (--host-resolver-rules), so a request
the page makes is recorded in the net log but never leaves the machine."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _net_log(path: Path) -> dict:
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError:  # a log cut short when the browser exits: close its event list
        return json.loads(text.rstrip().rstrip(",") + "]}")


def page_requests(log: dict) -> list[str]:
    """URLs the page (not the browser's own services) requested: their network isolation key is the
    page's file:// site; the browser's updater and sign-in probes have none ('not an origin')."""
    kinds = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = []
    for e in log["events"]:
        p = e.get("params") or {}
        if kinds.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p:
            if p.get("initiator") != "not an origin" or "file://" in p.get("network_isolation_key", ""):
                urls.append(p["url"])
    return urls


def render(html_file: Path, extra=(), budget_ms: int = 20000, timeout_s: int = 120) -> tuple[str, list[str]]:
    """(DOM after scripts, page network requests) of a local file."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "net.json"
        cmd = [chromium(), *FLAGS, f"--user-data-dir={tmp}/profile", f"--log-net-log={log}",
               f"--virtual-time-budget={budget_ms}", *extra, "--dump-dom", Path(html_file).resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout, page_requests(_net_log(log))


def screenshot(html_file: Path, png: Path, size=(1400, 3200), timeout_s: int = 120) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={tmp}/profile", "--virtual-time-budget=20000",
               f"--window-size={size[0]},{size[1]}", f"--screenshot={Path(png).resolve()}",
               Path(html_file).resolve().as_uri()]
        subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=True)
