// dqflow dashboard: live updates and cancel/retry. Plain JS, no build step.
"use strict";
(function () {
  const base = document.body.dataset.base || "";
  const TOKEN_KEY = "dqflow-write-token";
  const dialog = document.getElementById("token-dialog");
  const tokenInput = document.getElementById("token-input");
  const tokenButton = document.getElementById("token-button");
  const flash = document.getElementById("flash");

  function show(message, isError) {
    flash.textContent = message;
    flash.className = "flash" + (isError ? " error" : "");
    flash.hidden = false;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function labelTokenButton() { tokenButton.textContent = token() ? "Write token ✓" : "Write token"; }

  // Ask for the write token in the dialog; resolves with it, or null when closed.
  function askToken() {
    return new Promise((resolve) => {
      tokenInput.value = "";
      const done = (value) => {
        dialog.removeEventListener("close", onClose);
        resolve(value);
      };
      const onClose = () => done(dialog.returnValue === "save" ? token() : null);
      dialog.addEventListener("close", onClose);
      dialog.showModal();
      tokenInput.focus();
    });
  }
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = tokenInput.value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    labelTokenButton();
    dialog.close("save");
  });
  document.getElementById("token-cancel").addEventListener("click", () => dialog.close("cancel"));
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    labelTokenButton();
    dialog.close("forget");
  });
  tokenButton.addEventListener("click", () => askToken());
  labelTokenButton();

  async function write(path) {
    let value = token();
    if (!value) value = await askToken();
    if (!value) return null;
    const response = await fetch(base + path, { method: "POST", headers: { Authorization: "Bearer " + value } });
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      labelTokenButton();
    }
    if (!response.ok) {
      show(body.error || "request failed (" + response.status + ")", true);
      return null;
    }
    return body;
  }

  async function getJson(path) {
    const response = await fetch(base + path, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(path + ": " + response.status);
    return response.json();
  }

  // -- the job page -----------------------------------------------------------------
  const jobPage = document.querySelector('[data-page="job"]');
  if (jobPage) {
    const id = jobPage.dataset.jobId;
    const finished = new Set(["completed", "failed", "cancelled"]);
    const el = (name) => document.getElementById(name);
    let lastStatus = null;
    let lastEventCount = -1;
    let timer = null;

    // The same form as the server's: "2026-12-01 21:28:25Z".
    const when = (value) => (value ? new Date(value).toISOString().slice(0, 19).replace("T", " ") + "Z" : "–");
    const cell = (text, tag) => {
      const td = document.createElement("td");
      const inner = tag ? document.createElement(tag) : td;
      inner.textContent = text;
      if (tag) td.appendChild(inner);
      return td;
    };

    function renderJob(job) {
      const status = el("job-status");
      status.textContent = job.status;
      status.className = "badge badge-" + job.status;
      const progress = job.progress || 0;
      const bar = jobPage.querySelector(".progress");
      bar.setAttribute("aria-valuenow", String(progress));
      bar.firstElementChild.style.width = progress + "%";
      el("job-progress").textContent = progress + "%";
      el("job-attempts").textContent = job.attempts + "/" + job.maxAttempts;
      el("job-started").textContent = when(job.startedAt);
      const failedAt = job.status === "failed" ? job.lastFailedAt : null;
      el("job-finished").textContent = when(job.completedAt || job.cancelledAt || failedAt);
      el("job-worker").textContent = job.lockedBy || "–";
      el("job-failure").textContent = job.failureReason || "–";
      el("job-output").textContent = JSON.stringify(job.output, null, 2);
      el("cancel-button").hidden = !["pending", "processing", "waiting"].includes(job.status);
      el("retry-button").hidden = !["failed", "cancelled"].includes(job.status);
      const rows = el("job-errors").tBodies[0];
      rows.replaceChildren();
      for (const e of job.errorHistory) {
        const tr = document.createElement("tr");
        tr.append(cell(String(e.attempt)), cell(e.reason || ""), cell(e.error || "", "pre"), cell(when(e.at), "time"));
        tr.lastChild.className = "wide";
        rows.appendChild(tr);
      }
      if (!job.errorHistory.length) {
        const tr = document.createElement("tr");
        tr.className = "none";
        const td = cell("No errors.");
        td.colSpan = 4;
        tr.appendChild(td);
        rows.appendChild(tr);
      }
    }

    function renderEvents(events) {
      const rows = el("job-events").tBodies[0];
      rows.replaceChildren();
      for (const ev of events) {
        const tr = document.createElement("tr");
        const badge = document.createElement("span");
        badge.className = "badge badge-" + ev.eventType;
        badge.textContent = ev.eventType;
        const first = document.createElement("td");
        first.appendChild(badge);
        tr.append(first, cell(when(ev.createdAt), "time"), cell(ev.data ? JSON.stringify(ev.data) : "", "code"));
        tr.lastChild.className = "wide";
        rows.appendChild(tr);
      }
      lastEventCount = events.length;
    }

    async function refresh() {
      try {
        const { job } = await getJson("/api/jobs/" + id);
        renderJob(job);
        if (job.status !== lastStatus) {
          renderEvents((await getJson("/api/jobs/" + id + "/events")).events);
          lastStatus = job.status;
        }
        jobPage.dataset.finished = String(finished.has(job.status));
      } catch (error) {
        show("could not refresh: " + error.message, true);
      }
    }

    // Live: the server's event stream (GET /api/events) pushes every change of this job;
    // progress and output are drawn from the event itself, other changes re-read the job.
    let live = false;
    if (window.EventSource) {
      const source = new EventSource(base + "/api/events?jobId=" + encodeURIComponent(id));
      const mark = (state) => { live = state; jobPage.dataset.live = String(state); };
      source.addEventListener("open", () => mark(true));
      source.addEventListener("error", () => mark(false));
      source.addEventListener("job:progress", (event) => {
        const progress = JSON.parse(event.data).progress || 0;
        const bar = jobPage.querySelector(".progress");
        bar.setAttribute("aria-valuenow", String(progress));
        bar.firstElementChild.style.width = progress + "%";
        el("job-progress").textContent = progress + "%";
      });
      source.addEventListener("job:output", (event) => {
        el("job-output").textContent = JSON.stringify(JSON.parse(event.data).output, null, 2);
      });
      for (const name of ["processing", "completed", "failed", "retried", "cancelled", "edited", "reclaimed"]) {
        source.addEventListener("job:" + name, () => refresh());
      }
    }

    // Polling stays as a safety net: often while the stream is down, rarely while it is up.
    function poll() {
      clearTimeout(timer);
      const slow = live || jobPage.dataset.finished === "true";
      timer = setTimeout(async () => { await refresh(); poll(); }, slow ? 5000 : 500);
    }

    jobPage.querySelectorAll("[data-action]").forEach((button) => {
      button.addEventListener("click", async () => {
        const action = button.dataset.action;
        button.disabled = true;
        try {
          if (await write("/api/jobs/" + id + "/" + action)) {
            show(action === "cancel" ? "Cancelled." : "Queued again.", false);
            await refresh();
            poll();
          }
        } finally {
          button.disabled = false;
        }
      });
    });
    lastStatus = el("job-status").textContent.trim();
    poll();
  }

  // -- a workflow run: redraw the graph when one of its step jobs changes ----------------
  const runPage = document.querySelector('[data-page="run"]');
  if (runPage) {
    const id = runPage.dataset.runId;
    const live = document.getElementById("run-live");
    let pending = null;
    let streaming = false;
    let timer = null;

    async function redraw() {
      pending = null;
      try {
        const response = await fetch(base + "/workflows/runs/" + id + "/graph", { credentials: "same-origin", cache: "no-store" });
        if (!response.ok) return;
        live.innerHTML = await response.text();
        const status = live.querySelector("[data-run-status]").dataset.runStatus;
        runPage.dataset.finished = String(["completed", "failed", "cancelled"].includes(status));
        document.getElementById("run-cancel-button").hidden = status !== "running";
        document.getElementById("run-retry-button").hidden = !["failed", "cancelled"].includes(status);
      } catch (error) { /* the next event or tick tries again */ }
    }
    // Many step jobs finish at once in a fan-out: one redraw per 250 ms at most.
    const soon = () => { if (!pending) pending = setTimeout(redraw, 250); };

    if (window.EventSource) {
      const source = new EventSource(base + "/api/events?runId=" + encodeURIComponent(id));
      source.addEventListener("open", () => { streaming = true; runPage.dataset.live = "true"; });
      source.addEventListener("error", () => { streaming = false; runPage.dataset.live = "false"; });
      for (const name of ["processing", "progress", "completed", "failed", "retried", "cancelled", "reclaimed"]) {
        source.addEventListener("job:" + name, soon);
      }
    }
    // A safety net for what the stream does not carry (a step skipped, the run finishing).
    function poll() {
      clearTimeout(timer);
      const slow = runPage.dataset.finished === "true";
      timer = setTimeout(async () => { await redraw(); poll(); }, slow ? 10000 : streaming ? 2000 : 700);
    }
    runPage.querySelectorAll("[data-run-action]").forEach((button) => {
      button.addEventListener("click", async () => {
        const action = button.dataset.runAction;
        button.disabled = true;
        try {
          if (await write("/api/workflows/runs/" + id + "/" + action)) {
            show(action === "cancel" ? "Run cancelled." : "Run started again.", false);
            await redraw();
            poll();
          }
        } finally {
          button.disabled = false;
        }
      });
    });
    poll();
  }

  // -- the jobs and runs lists: refresh the table (and counts) in place ----------------
  const listPage = document.querySelector("[data-refresh]");
  if (listPage) {
    setInterval(async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
        if (!response.ok) return;
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const selector of [listPage.dataset.refresh, ".tabs"]) {
          const now = fresh.querySelector(selector);
          if (now) document.querySelector(selector).replaceWith(now);
        }
      } catch (error) { /* the next tick tries again */ }
    }, 3000);
  }
})();
