/* Assemblage pages: live run progress, the login form's #token, the export form.
   No framework and no inline script (the pages' Content-Security-Policy forbids it).
   Text from the server is always set with textContent, never parsed as HTML, except the
   heat map fragment, which the server escapes as it draws it. */
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const FINISHED = new Set(["finished", "failed", "interrupted", "cancelled"]);

  /* login: a link ending in #TOKEN (printed by `assemblage ui DIR`) logs in without
     the token reaching any server log: the fragment never leaves the browser. */
  function autoLogin() {
    const form = document.getElementById("login-form");
    if (!form || location.hash.length < 2 || document.getElementById("login-error")) return;
    document.getElementById("token").value = decodeURIComponent(location.hash.slice(1));
    history.replaceState(null, "", location.pathname + location.search);
    form.submit();
  }

  function badge(status, n) {
    const span = document.createElement("span");
    span.className = "badge s-" + status.replace(/[^a-z_]/g, "");
    span.textContent = status + " " + n;
    return span;
  }

  function updateRow(tr, run) {
    const bar = tr.querySelector("progress");
    bar.max = Math.max(run.total, 1);
    bar.value = run.done;
    tr.querySelector(".done").textContent = run.done + "/" + run.total;
    tr.querySelector(".status").textContent = run.status;
    tr.querySelector(".binaries").textContent = run.binaries;
    const counts = tr.querySelector(".counts");
    counts.replaceChildren();
    Object.keys(run.builds).sort().forEach((st) => {
      counts.appendChild(badge(st, run.builds[st]));
      counts.appendChild(document.createTextNode(" "));
    });
    tr.dataset.status = run.status;
  }

  async function refreshCoverage(runId) {
    const box = document.getElementById("coverage");
    if (!box || box.dataset.runId !== String(runId)) return;
    const r = await fetch("/ui/runs/" + runId + "/coverage", {credentials: "same-origin"});
    if (r.ok) box.innerHTML = await r.text();  // server-drawn SVG, every text escaped there
  }

  function newRow(run) {
    const tr = document.createElement("tr");
    tr.className = "run";
    tr.dataset.runId = String(run.id);
    const cells = ["id", "recipe", "status", "progress", "counts", "binaries", "created"].map((name) => {
      const td = document.createElement("td");
      if (name !== "id" && name !== "recipe" && name !== "progress" && name !== "created") td.className = name;
      tr.appendChild(td);
      return td;
    });
    const a = document.createElement("a");
    a.href = "/ui/runs/" + run.id;
    a.textContent = String(run.id);
    cells[0].appendChild(a);
    cells[1].textContent = run.recipe;
    const bar = document.createElement("progress");
    const done = document.createElement("span");
    done.className = "done";
    cells[3].append(bar, " ", done);
    return tr;
  }

  /* The runs list follows every run, new ones included; a run's page follows that run. */
  function liveRuns() {
    const table = document.getElementById("runs");
    if (!table) return;
    const all = table.dataset.live === "all";
    const body = table.tBodies[0] || table;
    const rows = () => Array.from(table.querySelectorAll("tr.run"));
    const seen = {};
    const tick = async () => {
      const open = rows().filter((tr) => !FINISHED.has(tr.dataset.status));
      if (!all && !open.length) return;
      const url = all ? "/ui/runs.json" : "/ui/runs.json?ids=" + open.map((tr) => tr.dataset.runId).join(",");
      try {
        const r = await fetch(url, {credentials: "same-origin"});
        if (r.ok) {
          for (const run of (await r.json()).runs) {
            let tr = rows().find((row) => row.dataset.runId === String(run.id));
            if (!tr) {
              if (!all) continue;
              tr = newRow(run);
              body.insertBefore(tr, body.firstChild);
            }
            const key = run.done + ":" + run.status + ":" + run.total;
            if (seen[run.id] !== key) {
              seen[run.id] = key;
              updateRow(tr, run);
              refreshCoverage(run.id);
            }
          }
        }
      } catch (e) { /* the next tick tries again */ }
      setTimeout(tick, 2000);
    };
    setTimeout(tick, 1000);
  }

  /* export: the form becomes the JSON body of POST /api/v1/exports (the service's ExportRequest:
     formats, where with lists of values, split with its ratios, seed) */
  function exportRequest(form) {
    const data = new FormData(form);
    const where = {};
    for (const key of ["platform", "arch", "toolchain", "opt", "license", "run"]) {
      const v = data.get(key);
      if (v) where[key] = [key === "run" ? Number(v) : v];
    }
    const body = {formats: data.getAll("format"), where: where};
    if (data.get("split_on")) {
      body.split = {ratios: {train: Number(data.get("train")), valid: Number(data.get("valid")),
                             test: Number(data.get("test"))}, by: data.get("by")};
      body.seed = Number(data.get("seed"));
    }
    return body;
  }

  /* the same export as `assemblage export` (its target: the service, or the dataset folder) */
  function commandLine(form, body) {
    const q = (s) => (/^[A-Za-z0-9_.,=:\/-]+$/.test(s) ? s : "'" + String(s).replace(/'/g, "'\\''") + "'");
    const args = ["assemblage", "export", q(form.dataset.target || "service"), "--out", "OUT",
                  "--format", body.formats.join(",")];
    for (const [k, v] of Object.entries(body.where)) args.push("--where", q(k + "=" + v.join(",")));
    if (body.split) {
      const r = body.split.ratios;
      args.push("--split", `train=${r.train},valid=${r.valid},test=${r.test}`, "--by", body.split.by,
                "--seed", String(body.seed));
    }
    return args.join(" ");
  }

  function show(box, text, link) {
    box.hidden = false;
    box.replaceChildren(document.createTextNode(text));
    if (link) {
      const a = document.createElement("a");
      a.href = link;
      a.id = "export-link";
      a.textContent = "download the export";
      box.appendChild(document.createTextNode(" "));
      box.appendChild(a);
    }
  }

  async function followExport(box, id) {
    try {
      const r = await fetch("/api/v1/exports/" + encodeURIComponent(id), {credentials: "same-origin"});
      const doc = await r.json().catch(() => ({}));
      if (!r.ok) return show(box, "export " + id + ": HTTP " + r.status + " " + JSON.stringify(doc.detail || doc));
      const link = doc.url || doc.download || null;
      const p = doc.progress;
      const progress = p && p.phase ? " (" + p.phase + " " + p.done + (p.total != null ? "/" + p.total : "") +
        ", step " + (p.step + 1) + " of " + (p.steps + 1) + ")" : "";
      const error = doc.error ? ": " + doc.error : "";
      show(box, "export " + id + ": " + (doc.status || "?") + progress + error, link);
      if (!link && !["failed", "finished"].includes(doc.status)) {
        setTimeout(() => followExport(box, id), 2000);
      }
    } catch (e) {
      show(box, "export " + id + ": " + e);
    }
  }

  function exportForm() {
    const form = document.getElementById("export-form");
    if (!form) return;
    const cli = document.getElementById("export-cli");
    const box = document.getElementById("export-status");
    const preview = () => { cli.textContent = commandLine(form, exportRequest(form)); };
    form.addEventListener("input", preview);
    form.addEventListener("change", preview);
    preview();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = exportRequest(form);
      show(box, "starting the export…");
      try {
        const r = await fetch("/api/v1/exports", {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
          body: JSON.stringify(body),
        });
        const doc = await r.json().catch(() => ({}));
        if (!r.ok) return show(box, "the service refused the export: HTTP " + r.status + " " + JSON.stringify(doc.detail || doc));
        show(box, "export " + doc.id + ": " + (doc.status || "pending"));
        followExport(box, doc.id);
      } catch (e) {
        show(box, "the export could not be started: " + e);
      }
    });
  }

  function numberLines() {
    const pre = document.getElementById("source-code");
    if (!pre || !pre.dataset.firstLine) return;
    pre.title = "from line " + pre.dataset.firstLine;
  }

  document.addEventListener("DOMContentLoaded", () => {
    autoLogin();
    liveRuns();
    exportForm();
    numberLines();
  });
})();
