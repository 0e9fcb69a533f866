"""Headless Chromium on a view page, for the browser tests and the view bench: Debian's
chromium driven by playwright (no browser download), talking to 127.0.0.1 only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed.view.server import assets_missing, wait_for


def missing() -> str | None:
    """Why a browser check cannot run here, or None."""
    if shutil.which("chromium") is None:
        return "no chromium (make browser-setup installs Debian's package)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright in .venv (make setup installs the dev extras)"
    gone = assets_missing()
    if gone:
        return f"the view's npm assets are missing ({', '.join(gone)}): make setup"
    return None


@contextmanager
def page(url: str, width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A loaded page with `window.saginView.ready`; the browser closes with the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            pg = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.goto(url)
            pg.wait_for_function("window.saginView && window.saginView.ready === true",
                                 timeout=30_000)
            pg.errors = errors
            yield pg
        finally:
            browser.close()


@contextmanager
def serving(args: list[str], announce: Path, timeout_s: float = 20.0) -> Iterator[str]:
    """`python -m testbed.view <args>` as a child process; its URL while the block runs."""
    announce.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "testbed.view", *args, "--announce",
                             str(announce)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        info = wait_for(announce, timeout_s)
        if info is None:
            proc.kill()
            raise RuntimeError(f"the view did not start: {proc.communicate()[1][-2000:]}")
        yield str(info["url"])
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def announced(run_root: Path, since: float, alive: Any, timeout_s: float = 120.0
              ) -> dict[str, Any] | None:
    """The view.json of the newest run under results/<scenario>/ written after `since`
    (wall), waiting while `alive()` and at most `timeout_s`; None if none came."""
    view = run_root / "latest" / "view.json"
    deadline = time.time() + timeout_s
    while time.time() < deadline and alive():
        try:
            if view.stat().st_mtime >= since:
                return dict(json.loads(view.read_text()))
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return None


def wait_until(pg: Any, js: str, timeout_s: float, poll_s: float = 0.1) -> tuple[Any, float]:
    """Poll a JS expression until truthy: (its value, wall time when seen)."""
    deadline = time.time() + timeout_s
    while True:
        value = pg.evaluate(js)
        if value:
            return value, time.time()
        if time.time() > deadline:
            raise TimeoutError(f"not within {timeout_s:g} s: {js}")
        time.sleep(poll_s)
