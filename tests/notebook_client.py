"""Run code cells through a running Jupyter server's kernel, as a browser does: the REST API
starts a kernel, its websocket channel carries execute requests (Jupyter's messaging
protocol), with the server's token. Used by the notebook tests on the local cluster and
through the rehearsal's SSH tunnel."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import requests
import websocket


@dataclass
class CellResult:
    code: str
    stdout: str = ""
    error: str | None = None  # "ename: evalue" when the cell raised
    outputs: list[dict[str, Any]] = field(default_factory=list)


def code_cells(path: Path) -> list[str]:
    """The code cells of a notebook file, in order."""
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _message(code: str, session: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "session": session,
            "username": "test",
            "version": "5.3",
            "date": "",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def run_cells(
    base: str, token: str, cells: list[str], *, timeout_s: float = 180
) -> list[CellResult]:
    """Start a kernel on the server at ``base`` (http://host:port), run ``cells`` in order
    (stopping at the first error), shut the kernel down; each cell's output."""
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{base}/api/kernels", headers=headers, json={"name": "python3"},
                           timeout=30)  # fmt: skip
    kernel.raise_for_status()
    kernel_id = kernel.json()["id"]
    session = uuid.uuid4().hex
    ws_url = (
        base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels?session_id={session}"
    )
    sock = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"],
                                       timeout=timeout_s)  # fmt: skip
    results: list[CellResult] = []
    try:
        for code in cells:
            request = _message(code, session)
            sock.send(json.dumps(request))
            result = CellResult(code)
            results.append(result)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                msg = json.loads(sock.recv())
                if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream" and content.get("name") == "stdout":
                    result.stdout += content["text"]
                elif kind == "error":
                    result.error = f"{content['ename']}: {content['evalue']}"
                elif kind in ("execute_result", "display_data"):
                    result.outputs.append(content.get("data", {}))
                elif kind == "status" and content.get("execution_state") == "idle":
                    break
            else:
                raise TimeoutError(f"cell did not finish in {timeout_s:.0f} s: {code[:80]}")
            if result.error:
                break
    finally:
        sock.close()
        requests.delete(f"{base}/api/kernels/{kernel_id}", headers=headers, timeout=30)
    return results
