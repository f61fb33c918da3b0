"""The gateway dialect's shapes: CometAPI as it really is, a new-api gateway in front of several Kling accounts.

What a new-api gateway adds to the Kling contract (docs/wire.md, "Through the CometAPI gateway"), as the simulator
writes it:

- a query answers the gateway's own task record, ``{"code": "success", "message": "", "data": {"task_id",
  "action", "status", "fail_reason", "progress", "submit_time", "start_time", "finish_time", "data": ...}}``, whose
  inner ``data`` is the last Kling answer its poller stored (the whole envelope, or only the task object);
- task errors carry a string code, ``{"code": "task_not_exist", "message": ..., "data": null}``; an upstream Kling
  error is relayed as ``fail_to_fetch_task`` with the upstream's HTTP status and its JSON body as text in
  ``message``, and every 429 has its message replaced by the saturation message (new-api does this once it has
  tried its other channels);
- its own errors (no channel for a model, an unknown route, a bad token) use ``{"error": {...}}``;
- time-outs in front of it answer an HTML page (524 from the CDN, 504 from its proxy).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, Response

from orchestrator.providers.local.state import SimTask

SATURATED = "当前分组上游负载已饱和，请稍后再试"  # "the group's upstream load is saturated, try later"
UPSTREAM_ERROR = "fail_to_fetch_task"  # new-api's code for an upstream answer that is not HTTP 200
ACTION = "generate"  # new-api's action for an image-to-video task
STATUSES = {"submitted": "SUBMITTED", "processing": "IN_PROGRESS", "succeed": "SUCCESS", "failed": "FAILURE"}
ERROR_TYPE = "comet_api_error"
_PAGES = {
    504: ("504 Gateway Time-out", "The gateway did not receive a timely response from the upstream server."),
    524: ("524: A timeout occurred", "The origin web server timed out responding to this request."),
}


def task_error(status: int, code: str, message: str) -> JSONResponse:
    """A task route's error, as new-api answers it (a 429 always says the pool is saturated)."""
    if status == 429:
        message = SATURATED
    return JSONResponse({"code": code, "message": message, "data": None}, status_code=status)


def upstream_error(status: int, kling_code: int, message: str) -> JSONResponse:
    """An upstream Kling error relayed by the gateway: the Kling body as JSON text inside ``message``."""
    kling = {"code": kling_code, "message": message, "request_id": str(uuid.uuid4()), "data": None}
    return task_error(status, UPSTREAM_ERROR, json.dumps(kling, ensure_ascii=False))


def task_not_exist() -> JSONResponse:
    return task_error(400, "task_not_exist", "task_not_exist")


def api_error(status: int, code: str, message: str) -> JSONResponse:
    """The gateway's own error shape (routing, channels, tokens)."""
    body = {"error": {"message": message, "type": ERROR_TYPE, "param": "", "code": code}}
    return JSONResponse(body, status_code=status)


def model_not_found(model: str) -> JSONResponse:
    return api_error(503, "model_not_found", f"no available channel for group default and model {model} (distributor)")


def invalid_url(method: str, path: str) -> JSONResponse:
    return api_error(404, "", f"Invalid URL ({method} {path})")


def html_page(status: int) -> Response:
    """A time-out page from in front of the gateway: the create may or may not exist upstream."""
    title, text = _PAGES.get(status, (f"{status} Error", "The gateway could not complete the request."))
    head = f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
    page = f"{head}<body><h1>{title}</h1><p>{text}</p></body></html>"
    return HTMLResponse(page, status_code=status)


def progress(task: SimTask, status: str, now: float) -> str:
    """The gateway's ``progress`` text: 0% submitted, rising while processing, 100% once finished."""
    if status in ("succeed", "failed"):
        return "100%"
    if status == "submitted" or task.render_time <= 0:
        return "0%"
    fraction = min(1.0, max(0.0, (now - task.created_mono) / task.render_time))
    return f"{10 + int(fraction * 89)}%"


def wrapped_task(kling_task: dict[str, Any], *, task: SimTask, now: float, inner: str) -> dict[str, Any]:
    """The answer to a query: the gateway's task record around the last Kling answer (``inner``: envelope/task)."""
    status, message, since = task.status_at(now)
    since_s = (task.created_ms + round((since - task.created_mono) * 1000)) // 1000
    start_s = (task.created_ms + round(task.processing_after * task.render_time * 1000)) // 1000
    stored: dict[str, Any] = kling_task
    if inner == "envelope":
        stored = {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": kling_task}
    record = {
        "task_id": task.task_id,
        "platform": "kling",
        "action": ACTION,
        "status": STATUSES[status],
        "fail_reason": message if status == "failed" else "",
        "progress": progress(task, status, now),
        "submit_time": task.created_ms // 1000,
        "start_time": start_s if status != "submitted" else 0,
        "finish_time": since_s if status in ("succeed", "failed") else 0,
        "data": stored,
    }
    return {"code": "success", "message": "", "data": record}
