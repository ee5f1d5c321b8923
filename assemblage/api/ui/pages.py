"""The pages under ``/ui``: runs (live), a run's coverage heat map, corpus charts, binaries,
functions with their source text, builds with their logs, the export form, login and logout."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from assemblage.api.deps import SessionDep, SettingsDep, StoreDep
from assemblage.api.schemas import MAX_ID, IdPath
from assemblage.api.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Principal,
    check_csrf,
    check_origin,
    csrf_token,
)
from assemblage.api.ui import HERE
from assemblage.api.ui.charts import STATUS_COLOURS, bar_chart, heat_map
from assemblage.api.ui.queries import composition, runs_overview
from assemblage.db import models as m
from assemblage.db.auth import scope_allows

__all__ = ["router", "LoginRequired"]

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")  # autoescape on for .html
SESSION_HOURS = 12
PAGE = 500
LOG_TAIL = 256 * 1024


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next = quote(next_path, safe="/")


def _user(request: Request) -> Principal:
    secret = request.cookies.get(SESSION_COOKIE)
    principal = request.app.state.auth.authenticate(secret) if secret else None
    if principal is None or not scope_allows(principal.scope, "read"):
        raise LoginRequired(request.url.path)
    return principal


UserDep = Annotated[Principal, Depends(_user)]


def _render(request: Request, name: str, user: Principal | None, status_code: int = 200, **ctx) -> HTMLResponse:
    secret = request.app.state.settings.secret_key.get_secret_value()
    ctx.update(
        user=user,
        csrf=csrf_token(user, secret) if user else "",
        colours=STATUS_COLOURS,
        can_submit=user is not None and scope_allows(user.scope, "submit"),
    )
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def _safe_next(path: str | None) -> str:
    """Only a path of these pages: never another site (``//host``, ``/\\host``) or a URL with a scheme."""
    if (
        path
        and path.startswith("/ui")
        and not path.startswith(("//", "/\\"))
        and "\\" not in path
        and all(0x20 < ord(c) < 0x7F for c in path)
    ):
        return path
    return "/ui/runs"


# ---------------------------------------------------------------- login


@router.get("/login")
def login_page(request: Request, next: Annotated[str | None, Query(max_length=500)] = None) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    resp = _render(request, "login.html", None, next=_safe_next(next), nonce=nonce, error=None)
    resp.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=600,
        httponly=True,
        samesite="strict",
        path="/ui/login",
        secure=request.url.scheme == "https",
    )
    return resp


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=300)],
    login: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=500)] = "/ui/runs",
) -> Response:
    check_origin(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(login.encode(), expected.encode()):
        raise HTTPException(403, "the login form expired or came from another site: reload it")
    token = token.strip()
    principal = request.app.state.auth.authenticate(token) if token else None
    if principal is None or not scope_allows(principal.scope, "read"):
        nonce = secrets.token_urlsafe(24)
        resp: Response = _render(
            request,
            "login.html",
            None,
            status_code=401,
            next=_safe_next(next),
            nonce=nonce,
            error="unknown or revoked token",
        )
        resp.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=600,
            httponly=True,
            samesite="strict",
            path="/ui/login",
            secure=request.url.scheme == "https",
        )
        return resp
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )
    resp.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return resp


@router.post("/logout")
def logout(
    request: Request, user: UserDep, settings: SettingsDep, csrf: Annotated[str, Form(max_length=100)] = ""
) -> RedirectResponse:
    check_csrf(request, user, settings.secret_key.get_secret_value(), csrf)
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# ---------------------------------------------------------------- runs


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/runs", status_code=303)


@router.get("/runs")
def runs_page(request: Request, s: SessionDep, user: UserDep) -> HTMLResponse:
    return _render(request, "runs.html", user, runs=runs_overview(s))


@router.get("/runs.json")
def runs_json(
    s: SessionDep, user: UserDep, ids: Annotated[str | None, Query(max_length=2000, pattern=r"^[0-9,]*$")] = None
) -> JSONResponse:
    """Progress of runs for the pages' live updates (the latest ones, or ``ids=1,2``)."""
    wanted = [int(x) for x in ids.split(",") if x][:100] if ids else None
    return JSONResponse({"runs": [r.as_json() for r in runs_overview(s, run_ids=wanted)]})


def _report(s, run_id: int):
    from assemblage.pipeline.report import run_report

    try:
        return run_report(s, run_id)
    except LookupError:
        raise HTTPException(404, f"no run {run_id}") from None


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: IdPath, s: SessionDep, user: UserDep) -> HTMLResponse:
    rep = _report(s, run_id)
    row = runs_overview(s, run_ids=[run_id])[0]
    return _render(
        request,
        "run.html",
        user,
        run=row,
        report=rep,
        heatmap=heat_map(rep),
        reasons=sorted(rep.by_reason.items(), key=lambda kv: -kv[1]),
    )


@router.get("/runs/{run_id}/coverage")
def coverage_fragment(run_id: IdPath, s: SessionDep, user: UserDep) -> HTMLResponse:
    """The heat map alone, for the run page to refresh while builds finish."""
    return HTMLResponse(str(heat_map(_report(s, run_id))))


# ---------------------------------------------------------------- corpus


@router.get("/corpus")
def corpus_page(
    request: Request, s: SessionDep, user: UserDep, run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> HTMLResponse:
    data = composition(s, run)
    charts = [
        bar_chart("binaries by configuration", data["config"], chart_id="chart-config"),
        bar_chart("binaries by licence", data["license"], chart_id="chart-license"),
        bar_chart("binaries by source", data["source"], chart_id="chart-source"),
        bar_chart("functions by configuration", data["functions"], chart_id="chart-functions"),
    ]
    total = sum(n for _, n in data["config"])
    return _render(request, "corpus.html", user, charts=charts, run=run, total=total)


@router.get("/binaries")
def binaries_page(
    request: Request,
    s: SessionDep,
    user: UserDep,
    run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> HTMLResponse:
    q = select(m.Binary).where(m.Binary.id > after)
    if run is not None:
        from assemblage.corpus.select import in_runs

        q = q.where(in_runs([run]))  # with the binaries of the builds it reused
    rows = list(s.scalars(q.order_by(m.Binary.id).limit(PAGE + 1)))
    more = rows[PAGE - 1].id if len(rows) > PAGE else None
    return _render(request, "binaries.html", user, binaries=rows[:PAGE], run=run, more=more)


@router.get("/binaries/{binary_id}")
def binary_page(
    request: Request, binary_id: IdPath, s: SessionDep, user: UserDep, after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
) -> HTMLResponse:
    b = s.get(m.Binary, binary_id)
    if b is None:
        raise HTTPException(404, f"no binary {binary_id}")
    funcs = list(
        s.scalars(
            select(m.Function)
            .where(m.Function.binary_id == binary_id, m.Function.id > after)
            .order_by(m.Function.id)
            .limit(PAGE + 1)
        )
    )
    more = funcs[PAGE - 1].id if len(funcs) > PAGE else None
    pdbs = list(s.scalars(select(m.Pdb).where(m.Pdb.binary_id == binary_id)))
    return _render(request, "binary.html", user, b=b, functions=funcs[:PAGE], more=more, pdbs=pdbs)


@router.get("/functions/{function_id}")
def function_page(request: Request, function_id: IdPath, s: SessionDep, user: UserDep) -> HTMLResponse:
    f = s.get(m.Function, function_id)
    if f is None:
        raise HTTPException(404, f"no function {function_id}")
    rvas = list(s.scalars(select(m.Rva).where(m.Rva.function_id == function_id).order_by(m.Rva.start)))
    lines = list(
        s.scalars(select(m.Line).where(m.Line.function_id == function_id).order_by(m.Line.rva, m.Line.id).limit(5000))
    )
    first = None
    if f.source_codes and f.decl_line:
        first = f.decl_line - _lines_above(f.source_codes, f.decl_line, lines, f.source_file)
    return _render(request, "function.html", user, f=f, b=f.binary, rvas=rvas, lines=lines, first_line=first)


def _lines_above(code: str, decl_line: int, lines, source_file) -> int:
    """How many lines of ``code`` come before its declaration line (the return type of GNU style)."""
    texts = {ln.line_number: ln.source_code for ln in lines if ln.source_file == source_file and ln.source_code}
    body = code.split("\n")
    decl_text = texts.get(decl_line)
    if decl_text is not None and decl_text in body:
        return body.index(decl_text)
    return 0


@router.get("/builds/{build_id}")
def build_page(request: Request, build_id: IdPath, s: SessionDep, store: StoreDep, user: UserDep) -> HTMLResponse:
    b = s.get(m.Build, build_id)
    if b is None:
        raise HTTPException(404, f"no build {build_id}")
    log, cut = None, False
    if b.log_key:
        try:
            data = store.get(b.log_key)
            cut = len(data) > LOG_TAIL
            log = data[-LOG_TAIL:].decode("utf-8", errors="replace")
        except FileNotFoundError:
            log = None
    binaries = list(s.scalars(select(m.Binary).where(m.Binary.build_id == (b.reused_from_id or b.id))))
    return _render(request, "build.html", user, build=b, log=log, log_cut=cut, binaries=binaries)


# ---------------------------------------------------------------- export


@router.get("/export")
def export_page(
    request: Request, s: SessionDep, user: UserDep, run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> HTMLResponse:
    configs = list(s.scalars(select(m.Configuration).order_by(m.Configuration.identifier)))
    options = {
        "platform": sorted({c.platform for c in configs}),
        "arch": sorted({c.arch for c in configs}),
        "toolchain": sorted({c.toolchain for c in configs}),
        "opt": sorted({c.opt for c in configs}),
    }
    licenses = sorted({x for x in s.scalars(select(m.Binary.license).distinct()) if x})
    runs = runs_overview(s, limit=100)
    target = getattr(request.app.state, "export_target", "service")  # `assemblage ui DIR`: the folder
    return _render(
        request, "export.html", user, options=options, licenses=licenses, runs=runs, run=run, export_target=target
    )
