// flowbus web UI: plain JavaScript over /api/v1, live through server-sent events. No build step.
"use strict";

const API = "/api/v1";
const page = document.getElementById("page");
let closeLive = () => {};

// A page's live updates, kept until the page changes: a page whose setup finished after the
// user moved on (a slow first read) closes them at once instead of drawing over the new page.
function keepLive(mine, close) {
  if (mine !== generation) close();
  else closeLive = close;
}

// --- helpers -------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Incremented on every navigation: late work of a page left (a fetch, a timer) must not draw.
let generation = 0;

function show(...nodes) {
  // The page's new content; absent parts (null) are left out, not written as "null".
  page.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== undefined));
}

function cookie(name) {
  const found = document.cookie.split("; ").find((part) => part.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

// Who is logged in (GET /api/v1/me): the buttons a role may not use are not shown (the server
// refuses them anyway). Roles in order: each may do what the ones before it may.
const ROLES = ["viewer", "operator", "developer", "admin"];
let me = { name: "local", role: "admin", via: "open" };

function may(role) {
  return ROLES.indexOf(me.role) >= ROLES.indexOf(role);
}

async function api(path, options = {}) {
  // A session's state-changing request carries its CSRF token (the cookie the login set,
  // readable by this page only).
  const headers = { "Content-Type": "application/json" };
  const csrf = cookie("flowbus_csrf");
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(API + path, { headers, ...options });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    // No session (expired, logged out, its token revoked): log in again.
    location.assign("/login");
  }
  if (!response.ok) {
    const error = new Error((body.error && body.error.message) || response.statusText);
    error.body = body;
    throw error;
  }
  return body;
}

function deploymentPath(name) {
  // "flow/deployment name" as URL path segments: a name may hold spaces, "?", "#" or "%".
  return name.split("/").map(encodeURIComponent).join("/");
}

function badge(type, name) {
  return el("span", { class: `badge s-${type}`, "data-state": name }, name);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function shortId(id) {
  // Run ids begin with their creation time: the end tells runs of the same minute apart.
  return `…${id.slice(-8)}`;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 1 ? `${(value * 1000).toFixed(0)} ms` : `${value.toFixed(2)} s`;
}

const EVENT_TYPES = ["flow_run.created", "flow_run.state", "task_run.created", "task_run.state",
  "log", "deployment.saved", "artifact.created", "artifact.updated"];

function live(params, onEvent) {
  // One EventSource; closed when the page changes.
  const source = new EventSource(`${API}/events/stream?${params}`);
  const dot = document.getElementById("live");
  source.onopen = () => dot.classList.add("on");
  source.onerror = () => dot.classList.remove("on");
  source.onmessage = (message) => onEvent(JSON.parse(message.data));
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => onEvent(JSON.parse(message.data)));
  }
  return () => { source.close(); dot.classList.remove("on"); };
}

// --- runs list -----------------------------------------------------------------------------------

async function runsPage(query) {
  const mine = generation;
  const filters = new URLSearchParams(query);
  const state = el("input", { placeholder: "state (failed, Late…)", value: filters.get("state") || "" });
  const flow = el("input", { placeholder: "flow", value: filters.get("flow") || "" });
  const deployment = el("input", { placeholder: "deployment", value: filters.get("deployment") || "" });
  const apply = () => {
    const next = new URLSearchParams();
    if (state.value) next.set("state", state.value);
    if (flow.value) next.set("flow", flow.value);
    if (deployment.value) next.set("deployment", deployment.value);
    location.hash = `#/runs?${next}`;
  };
  const tbody = el("tbody");
  const more = el("button", { class: "secondary", onclick: () => load(more.dataset.cursor) }, "Older runs");
  const rows = new Map();

  // The stream holds events in publication order, which is not always the run's own order (the
  // orchestrator publishes Pending after it answers the claim; the agent publishes Running at
  // once), and the replay from `since` repeats states the list already shows. A row takes a
  // state only if it is newer: a higher sequence number than any seen, and, before the first,
  // not older than the state the store returned.
  function isNewer(tr, event) {
    const seen = Number(tr.dataset.seq || 0);
    const newer = seen
      ? event.seq > seen
      : Date.parse(event.state.timestamp) >= Date.parse(tr.dataset.stateTime);
    if (newer) tr.dataset.seq = event.seq;
    return newer;
  }

  function row(run) {
    const tr = el("tr", { "data-run": run.id, "data-state-time": run.state_timestamp },
      el("td", {}, el("a", { href: `#/runs/${run.id}` }, run.name)),
      el("td", {}, run.flow_name),
      el("td", {}, run.deployment || el("span", { class: "muted" }, "local")),
      el("td", { class: "state" }, badge(run.state_type, run.state_name)),
      el("td", {}, when(run.created)),
      el("td", { class: "mono muted", title: run.id }, shortId(run.id)));
    rows.set(run.id, tr);
    return tr;
  }

  async function load(cursor) {
    const params = new URLSearchParams(filters);
    params.set("limit", "50");
    if (cursor) params.set("cursor", cursor);
    const data = await api(`/runs?${params}`);
    for (const run of data.runs) tbody.append(row(run));
    more.dataset.cursor = data.next_cursor || "";
    more.hidden = !data.next_cursor;
  }

  show(
    el("h1", {}, "Flow runs"),
    el("div", { class: "filters" }, state, flow, deployment,
      el("button", { onclick: apply }, "Filter")),
    el("table", {}, el("thead", {}, el("tr", {},
      ...["Run", "Flow", "Deployment", "State", "Created", "Id"].map((h) => el("th", {}, h)))), tbody),
    el("p", {}, more));
  // Events from just before the list is read are replayed: none falls between the read and
  // the subscription, even when the store trails the events.
  const since = new Date(Date.now() - 2000).toISOString();
  await load(null);

  // Live: new runs appear on top, state changes update their row in place.
  keepLive(mine, live(new URLSearchParams([["types", "flow_run.created"], ["types", "flow_run.state"],
    ["since", since]]),
    async (event) => {
      const known = rows.get(event.stream_id);
      if (known) {
        if (event.type === "flow_run.state" && isNewer(known, event)) {
          known.querySelector(".state").replaceChildren(badge(event.state.type, event.state.name));
        }
      } else if (event.type === "flow_run.created" && !filters.toString()) {
        const run = await api(`/runs/${event.stream_id}`).catch(() => null);
        if (run && mine === generation && !rows.has(run.id)) tbody.prepend(row(run));
      }
    }));
}

// --- run detail ----------------------------------------------------------------------------------

async function runPage(runId) {
  const mine = generation;
  let run = await api(`/runs/${runId}`);
  // State events seen live: the store can trail them by a commit, so those after the last one
  // it returned (by the run's own sequence numbers, never by time or name) are added to it
  // until it has them all.
  const seenStates = new Map();
  const merged = (view) => {
    const top = Math.max(0, ...view.state_history.map((h) => h.seq));
    const extra = [...seenStates.values()].filter((h) => h.seq > top);
    if (!extra.length) return view;
    const history = [...view.state_history, ...extra].sort((a, b) => a.seq - b.seq);
    const last = history[history.length - 1];
    return { ...view, state_history: history, state_type: last.type, state_name: last.name,
             state_timestamp: last.timestamp, behind: true };
  };
  const logs = el("pre", { class: "logs", id: "logs" });
  // The resume form is kept across renders (state events redraw the page): what the user has
  // typed into it stays.
  let resume = null;
  const resumeForm = () => {
    if (!run.pause) return (resume = null);
    if (!resume || resume.dataset.key !== run.pause.pause_key) {
      resume = resumePanel(run);
      resume.dataset.key = run.pause.pause_key;
    }
    return resume;
  };
  const render = () => {
    if (mine !== generation) return; // the user has moved on
    const cancellable = !["COMPLETED", "FAILED", "CANCELLED", "CRASHED", "CANCELLING"].includes(run.state_type);
    const retryable = ["FAILED", "CANCELLED", "CRASHED"].includes(run.state_type) && !run.behind;
    show(
      el("h1", {}, `${run.name} `, badge(run.state_type, run.state_name)),
      el("p", {},
        cancellable && run.deployment && may("operator")
          ? el("button", { class: "danger", id: "cancel", onclick: cancel }, "Cancel run") : null,
        retryable && run.deployment && may("operator")
          ? el("button", { id: "retry", onclick: retry,
              title: "Run it again as a new attempt: its completed tasks replay" }, "Retry run") : null,
        run.parent_run_id ? el("a", { href: `#/runs/${run.parent_run_id}` }, " ↑ parent run") : null,
        run.triggered_by ? el("span", { class: "muted", id: "triggered-by" },
          ` started by automation `, el("a", { href: "#/automations" }, run.triggered_by.automation),
          ` on event ${run.triggered_by.event_type} (${run.triggered_by.event_id})`) : null,
        run.scheduled_time ? el("span", { class: "muted" }, ` scheduled for ${when(run.scheduled_time)}`)
          : null,
        run.started_by ? el("span", { class: "muted", id: "started-by" }, ` started by ${run.started_by}`)
          : null,
        run.cancelled_by ? el("span", { class: "muted", id: "cancelled-by" },
          ` cancelled by ${run.cancelled_by}`) : null),
      resumeForm(),
      el("div", { class: "grid" },
        el("div", { class: "panel" }, el("h2", {}, "Run"), el("dl", { class: "kv" },
          el("dt", {}, "Flow"), el("dd", {}, run.flow_name),
          el("dt", {}, "Deployment"), el("dd", {}, run.deployment || "local"),
          el("dt", {}, "Id"), el("dd", { class: "mono" }, run.id),
          el("dt", {}, "Started"), el("dd", {}, when(run.started)),
          el("dt", {}, "Duration"), el("dd", {}, seconds(run.duration_seconds)),
          el("dt", {}, "Result"), el("dd", { class: "mono", id: "result" }, resultText(run)),
          el("dt", {}, "Code"), el("dd", { class: "mono", id: "code-hash", title: run.code_hash || "" },
            run.code_hash ? `sha256 ${run.code_hash.slice(0, 12)}` : "–"),
          el("dt", {}, "Tags"), el("dd", {}, run.tags.join(", ") || "–"))),
        el("div", { class: "panel" }, el("h2", {}, "Parameters"),
          el("pre", { class: "mono" }, JSON.stringify(run.parameters, null, 2))),
        el("div", { class: "panel" }, el("h2", {}, "States"),
          el("ul", { class: "timeline", id: "states" }, run.state_history.map((s) =>
            el("li", { "data-seq": s.seq },
              s.attempt ? el("div", { class: "attempt" }, `attempt ${s.attempt}`) : null,
              badge(s.type, s.name), " ", el("span", { class: "muted" }, when(s.timestamp)),
              s.message ? el("div", { class: "muted" }, s.message) : null))))),
      run.error ? el("div", {}, el("h2", {}, "Error"), el("pre", { class: "error" }, run.error)) : null,
      artifactsSection(run.artifacts),
      el("h2", {}, `Task runs (${run.task_runs.length})`), gantt(run.task_runs),
      run.subflow_runs.length ? el("div", {}, el("h2", {}, "Subflow runs"), el("ul", {},
        run.subflow_runs.map((s) => el("li", {}, el("a", { href: `#/runs/${s.id}` }, s.name), " ",
          el("span", { class: "muted" }, s.state_name))))) : null,
      el("h2", {}, "Logs"), logs);
  };

  async function cancel() {
    document.getElementById("cancel").disabled = true;
    await api(`/runs/${runId}/cancel`, { method: "POST" });
  }

  async function retry() {
    document.getElementById("retry").disabled = true;
    await api(`/runs/${runId}/retry`, { method: "POST" });
  }

  render();
  // Logs from the first line, then live; state changes re-read the run.
  const stream = new EventSource(`${API}/runs/${runId}/logs/stream`);
  stream.addEventListener("log", (message) => {
    const line = JSON.parse(message.data);
    logs.append(`${new Date(line.occurred).toLocaleTimeString()}  ${line.message}\n`);
  });
  const stopStates = live(new URLSearchParams([["run_id", runId], ["types", "flow_run.state"],
    ["types", "task_run.state"], ["types", "artifact.created"], ["types", "artifact.updated"]]),
  async (event) => {
    if (event.type === "flow_run.state" && event.stream_id === runId) {
      seenStates.set(event.seq, { ...event.state, seq: event.seq, attempt: event.attempt ?? undefined });
      run = merged(run);
      render();
    }
    for (let tries = 0; tries < 10 && mine === generation; tries++) {
      run = merged(await api(`/runs/${runId}`));
      render(); // the logs element is kept across renders, with every line it has
      if (!run.behind) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });
  keepLive(mine, () => { stream.close(); stopStates(); });
}

function resumePanel(run) {
  // A Paused run: the form of the input its pause waits for (from the model's JSON schema).
  const schema = run.pause.input_schema;
  const defs = (schema && schema.$defs) || {};
  const inputs = {};
  const notice = el("div", { class: "notice", hidden: true });
  const rows = Object.entries((schema && schema.properties) || {}).map(([key, property]) => {
    inputs[key] = fieldFor(key, property, defs, property.default);
    return el("div", { class: "form-row" }, el("label", {}, property.title || key), inputs[key],
      el("span", { class: "field-error", id: `resume-error-${key}` }));
  });
  async function resume(event) {
    event.preventDefault();
    notice.hidden = true;
    const given = {};
    for (const [key, input] of Object.entries(inputs)) {
      const value = readField(input);
      if (value !== undefined) given[key] = value;
    }
    try {
      await api(`/runs/${run.id}/resume`, { method: "POST",
        body: JSON.stringify({ input: schema ? given : null }) });
      document.getElementById("resume").disabled = true;
    } catch (error) {
      notice.textContent = error.message;
      notice.hidden = false;
      for (const item of (error.body?.error?.details || [])) {
        const target = document.getElementById(`resume-error-${item.loc?.[0]}`);
        if (target) target.textContent = item.msg;
      }
    }
  }
  return el("form", { class: "panel", id: "resume-form", onsubmit: resume },
    el("h2", {}, `Paused at ${run.pause.pause_key}`),
    el("p", { class: "muted" }, `Resume before ${when(run.pause.pause_timeout_at)}, or it fails.`),
    notice, rows, may("operator") ? el("button", { type: "submit", id: "resume" }, "Resume") : null);
}

// A run's result as JSON where it has one (what every other language reads), else the short
// repr of a value JSON cannot hold; long ones are cut (the API and `flowbus runs result` have it whole).
function resultText(run) {
  const text = run.result !== null && run.result !== undefined
    ? JSON.stringify(run.result, null, 1).replace(/\n\s*/g, " ") : run.result_summary;
  if (!text) return "–";
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}

function gantt(taskRuns) {
  if (!taskRuns.length) return el("p", { class: "muted" }, "No task runs.");
  const starts = taskRuns.map((t) => Date.parse(t.started || t.created));
  const ends = taskRuns.map((t) => Date.parse(t.ended || new Date().toISOString()));
  const first = Math.min(...starts);
  const span = Math.max(1, Math.max(...ends) - first);
  return el("div", { class: "panel gantt" }, taskRuns.map((t, i) =>
    el("div", { class: "row" },
      el("span", {}, t.attempt ? el("span", { class: "muted" }, `#${t.attempt} `) : null, t.name, " ",
        badge(t.state_type, t.state_name),
        t.retries ? el("span", { class: "muted retried", title: `ran ${t.retries + 1} times` },
          ` ↻ ${t.retries} ${t.retries === 1 ? "retry" : "retries"}`) : null,
        t.replay_of ? el("span", { class: "muted replayed",
          title: `result of task run ${t.replay_of.task_run_id}` },
          ` replayed from attempt ${t.replay_of.attempt}`) : null),
      el("div", { class: "track" }, el("div", {
        class: `bar s-${t.state_type}`,
        style: `left:${((starts[i] - first) / span) * 100}%;width:${((ends[i] - starts[i]) / span) * 100}%`,
      })),
      el("span", { class: "muted" }, seconds(t.duration_seconds)))));
}

// --- deployments and the run form ----------------------------------------------------------------

async function deploymentsPage() {
  const deployments = await api("/deployments");
  const schedules = (d) => d.schedules.length
    ? `${d.schedules.filter((s) => s.active).length} active of ${d.schedules.length}` : "–";
  show(el("h1", {}, "Deployments"),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Deployment", "Queue", "Schedules", "Entrypoint",
      "Updated"].map((h) => el("th", {}, h)))), el("tbody", {}, deployments.map((d) => el("tr", {},
      el("td", {}, el("a", { href: `#/deployments/${deploymentPath(d.name)}` }, d.name)),
      el("td", {}, d.queue), el("td", {}, schedules(d)), el("td", { class: "mono" }, d.entrypoint),
      el("td", {}, when(d.updated)))))));
}

function fieldFor(name, schema, defs, value) {
  const resolved = schema.$ref ? defs[schema.$ref.split("/").pop()] || {} : schema;
  const options = (resolved.anyOf || []).filter((s) => s.type !== "null");
  const single = options.length === 1 ? options[0] : resolved;
  const kind = single.type;
  let input;
  if (single.enum) {
    input = el("select", { name }, single.enum.map((v) => el("option", { value: v }, v)));
    if (value !== undefined) input.value = value;
  } else if (kind === "boolean") {
    input = el("input", { type: "checkbox", name });
    input.checked = Boolean(value);
  } else if (kind === "integer" || kind === "number") {
    input = el("input", { type: "number", name, step: kind === "integer" ? "1" : "any", value: value ?? "" });
  } else if (kind === "string") {
    input = el("input", { type: single.format === "date" ? "date" : "text", name, value: value ?? "" });
  } else {
    input = el("textarea", { name, rows: 3, class: "mono", placeholder: "JSON" },
      value === undefined ? "" : JSON.stringify(value));
    input.dataset.json = "1";
  }
  input.dataset.kind = kind || "json";
  return input;
}

function readField(input) {
  if (input.type === "checkbox") return input.checked;
  if (input.value === "") return undefined;
  if (input.dataset.json) return JSON.parse(input.value);
  if (input.dataset.kind === "integer") return Number.parseInt(input.value, 10);
  if (input.dataset.kind === "number") return Number(input.value);
  return input.value;
}

function schedulesPanel(d, redraw) {
  // A deployment's schedules, each with its next slot and a pause/resume button.
  if (!d.schedule_details.length) return el("p", { class: "muted" }, "No schedules.");
  return el("div", { id: "schedules" }, el("h2", {}, "Schedules"),
    el("p", { class: "muted" }, `catch-up ${d.catchup} · overlap ${d.overlap}`),
    el("ul", { class: "plain" }, d.schedule_details.map((s) => el("li", { "data-schedule": s.id },
      el("b", {}, `#${s.id} `), s.summary, " ",
      s.active ? el("span", { class: "badge s-COMPLETED" }, "active")
        : el("span", { class: "badge s-PAUSED" }, "paused"),
      el("span", { class: "muted" }, s.next_slot ? ` next ${when(s.next_slot)} ` : " "),
      may("operator") ? el("button", { class: "secondary small", onclick: async (event) => {
        event.target.disabled = true;
        await api(`/deployments/${deploymentPath(d.name)}/schedules/${s.id}/${s.active ? "pause" : "resume"}`,
          { method: "POST" });
        redraw();
      } }, s.active ? "Pause" : "Resume") : null))));
}

async function deploymentPage(name) {
  const d = await api(`/deployments/${deploymentPath(name)}`);
  const schema = d.parameter_schema || {};
  const defs = schema.$defs || {};
  const required = new Set(schema.required || []);
  const inputs = {};
  const notice = el("div", { class: "notice", hidden: true });
  const rows = Object.entries(schema.properties || {}).map(([key, property]) => {
    inputs[key] = fieldFor(key, property, defs, d.parameters[key] ?? property.default);
    inputs[key].required = required.has(key) && d.parameters[key] === undefined;
    return el("div", { class: "form-row" },
      el("label", {}, property.title || key, required.has(key) ? " *" : ""), inputs[key],
      el("span", { class: "field-error", id: `error-${key}` }));
  });

  async function submit(event) {
    event.preventDefault();
    notice.hidden = true;
    document.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
    const parameters = {};
    try {
      for (const [key, input] of Object.entries(inputs)) {
        const value = readField(input);
        if (value !== undefined) parameters[key] = value;
      }
    } catch (error) {
      notice.textContent = `Not JSON: ${error.message}`;
      notice.hidden = false;
      return;
    }
    try {
      const run = await api(`/deployments/${deploymentPath(name)}/runs`, { method: "POST", body: JSON.stringify({ parameters }) });
      location.hash = `#/runs/${run.run_id}`;
    } catch (error) {
      notice.textContent = error.message;
      notice.hidden = false;
      for (const item of (error.body?.error?.details || [])) {
        const target = document.getElementById(`error-${item.loc?.[0]}`);
        if (target) target.textContent = item.msg;
      }
    }
  }

  show(el("h1", {}, d.name),
    el("div", { class: "grid" },
      el("div", { class: "panel" }, el("dl", { class: "kv" },
        el("dt", {}, "Entrypoint"), el("dd", { class: "mono" }, d.entrypoint),
        el("dt", {}, "Queue"), el("dd", {}, d.queue),
        el("dt", {}, "Version"), el("dd", {}, d.version),
        el("dt", {}, "Description"), el("dd", {}, d.description || "–")),
        schedulesPanel(d, () => route())),
      may("operator") ? el("form", { class: "panel", id: "run-form", onsubmit: submit },
        el("h2", {}, "Run with parameters"), notice, rows,
        el("button", { type: "submit" }, "Run")) : null));
}

// --- dashboard -----------------------------------------------------------------------------------

const CHART_STATES = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED", "RUNNING", "PENDING",
  "SCHEDULED", "CANCELLING", "PAUSED"];

function debounced(action, ms) {
  // Many events in a burst make one refresh, at most every ms.
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; action(); }, ms);
  };
}

function card(label, value, type) {
  return el("div", { class: "card", "data-card": label },
    el("div", { class: "card-value" + (type ? ` t-${type}` : "") }, value),
    el("div", { class: "muted" }, label));
}

function hourChart(hours) {
  const peak = Math.max(1, ...hours.map((h) => Object.values(h.counts).reduce((a, b) => a + b, 0)));
  return el("div", { class: "chart", id: "chart" }, hours.map((h) => {
    const total = Object.values(h.counts).reduce((a, b) => a + b, 0);
    const label = new Date(h.hour).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit",
      hourCycle: "h23" });
    const detail = Object.entries(h.counts).map(([s, n]) => `${s.toLowerCase()} ${n}`).join(", ");
    return el("div", { class: "col", title: `${label}: ${total} runs${detail ? ` (${detail})` : ""}` },
      el("div", { class: "stack", style: `height:${(total / peak) * 100}%` },
        CHART_STATES.filter((s) => h.counts[s]).map((s) =>
          el("div", { class: `seg s-${s}`, style: `flex:${h.counts[s]}` }))),
      el("div", { class: "tick muted" }, label.slice(0, 2)));
  }));
}

function queueRows(queues, withButtons) {
  return queues.map((q) => el("tr", { "data-queue": q.settings.name },
    el("td", {}, q.settings.name),
    el("td", {}, q.settings.paused ? el("span", { class: "badge s-PAUSED" }, "paused")
      : el("span", { class: "badge s-COMPLETED" }, "active")),
    el("td", { class: "num" }, q.waiting), el("td", { class: "num" }, q.in_flight),
    el("td", { class: "num" }, q.settings.priority),
    el("td", { class: "num" }, q.settings.concurrency_limit ?? "–"),
    withButtons && may("operator") ? el("td", {}, el("button", {
      class: "secondary small", "data-action": q.settings.paused ? "resume" : "pause",
      onclick: async (event) => {
        event.target.disabled = true;
        await api(`/queues/${q.settings.name}/${q.settings.paused ? "resume" : "pause"}`,
          { method: "POST" });
        withButtons();
      },
    }, q.settings.paused ? "Resume" : "Pause")) : null));
}

const QUEUE_HEADERS = ["Queue", "Status", "Waiting", "In flight", "Priority", "Limit"];

async function dashboardPage() {
  const mine = generation;
  const body = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  show(el("h1", {}, "Dashboard"), body);

  async function refresh() {
    const [stats, queues, agents] = await Promise.all([
      api("/stats/runs?hours=24"),
      api("/queues").catch(() => []),
      api("/agents").catch(() => []),
    ]);
    if (mine !== generation) return;
    const total = Object.values(stats.totals).reduce((a, b) => a + b, 0);
    const count = (...types) => types.reduce((sum, t) => sum + (stats.totals[t] || 0), 0);
    const online = agents.filter((a) => a.alive);
    body.replaceChildren(
      el("div", { class: "cards" },
        card("runs, last 24 h", total),
        card("completed", count("COMPLETED"), "COMPLETED"),
        card("failed or crashed", count("FAILED", "CRASHED"), "FAILED"),
        card("running", count("RUNNING", "CANCELLING"), "RUNNING"),
        card("waiting", count("SCHEDULED", "PENDING", "PAUSED"), "SCHEDULED"),
        card("agents online", online.length)),
      el("div", { class: "panel" }, el("h2", {}, "Runs created per hour, by state now"),
        hourChart(stats.hours),
        el("div", { class: "legend" }, CHART_STATES.filter((s) => stats.totals[s]).map((s) =>
          el("span", {}, el("i", { class: `s-${s}` }), s.toLowerCase())))),
      el("div", { class: "grid" },
        el("div", { class: "panel" }, el("h2", {}, "Recent failures"),
          stats.recent_failures.length ? el("table", { id: "failures" }, el("tbody", {},
            stats.recent_failures.map((r) => el("tr", {},
              el("td", {}, el("a", { href: `#/runs/${r.id}` }, r.name)),
              el("td", {}, r.flow_name), el("td", {}, badge(r.state_type, r.state_name)),
              el("td", { class: "muted" }, when(r.state_timestamp))))))
            : el("p", { class: "muted" }, "No failures. ")),
        el("div", { class: "panel" }, el("h2", {}, el("a", { href: "#/queues" }, "Work queues")),
          queues.length ? el("table", { id: "queues" },
            el("thead", {}, el("tr", {}, QUEUE_HEADERS.map((h) => el("th", {}, h)))),
            el("tbody", {}, queueRows(queues, null)))
            : el("p", { class: "muted" }, "No work queues yet."),
          el("h2", {}, el("a", { href: "#/queues" }, "Agents online")),
          online.length ? el("ul", { class: "plain", id: "agents" }, online.map((a) => el("li", {},
            el("b", {}, a.name), el("span", { class: "muted" },
              ` ${a.runs.length}/${a.concurrency} runs · ${a.queues.join(", ")}`))))
            : el("p", { class: "muted" }, "No agent online."))));
  }

  await refresh();
  const soon = debounced(() => refresh().catch(() => {}), 1000);
  const stopLive = live(new URLSearchParams([["types", "flow_run.created"],
    ["types", "flow_run.state"]]), soon);
  // Agents announce themselves by heartbeat, not by event: their list is read again now and then.
  const timer = setInterval(soon, 5000);
  keepLive(mine, () => { stopLive(); clearInterval(timer); });
}

// --- work queues and agents ----------------------------------------------------------------------

async function queuesPage() {
  const mine = generation;
  const queuesBody = el("tbody");
  const agentsBody = el("tbody");
  const limitsBody = el("tbody");
  show(el("h1", {}, "Work queues"),
    el("table", { id: "queues" }, el("thead", {}, el("tr", {},
      [...QUEUE_HEADERS, ""].map((h) => el("th", {}, h)))), queuesBody),
    el("h1", { class: "spaced" }, "Tag concurrency limits"),
    el("table", { id: "limits" }, el("thead", {}, el("tr", {},
      ["Tag", "Slots in use", "Waiting", "Held by"].map((h) => el("th", {}, h)))), limitsBody),
    el("h1", { class: "spaced" }, "Agents"),
    el("table", { id: "agents" }, el("thead", {}, el("tr", {},
      ["Agent", "Status", "Queues", "Runs", "Host", "Started", "Last heartbeat"]
        .map((h) => el("th", {}, h)))), agentsBody));

  async function refresh() {
    const [queues, agents, limits] = await Promise.all([api("/queues"), api("/agents"),
      api("/limits")]);
    if (mine !== generation) return;
    limitsBody.replaceChildren(...limits.map((l) => el("tr", { "data-tag": l.tag },
      el("td", {}, el("b", {}, l.tag)),
      el("td", { class: "num" }, `${l.active} / ${l.limit}`), el("td", { class: "num" }, l.waiting),
      el("td", {}, l.holders.slice(0, 5).map((h) =>
        el("a", { class: "mono", href: `#/runs/${h.run_id}` }, `${shortId(h.run_id)} `))))));
    if (!limits.length) limitsBody.append(el("tr", {}, el("td", { colspan: 4, class: "muted" },
      "No limits. Set one with flowbus limit set TAG N.")));
    queuesBody.replaceChildren(...queueRows(queues, refresh));
    if (!queues.length) queuesBody.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No work queues yet.")));
    agentsBody.replaceChildren(...agents.map((a) => el("tr", { "data-agent": a.name },
      el("td", {}, el("b", {}, a.name)),
      el("td", {}, a.alive ? el("span", { class: "badge s-COMPLETED" }, "online")
        : el("span", { class: "badge s-CRASHED" }, "silent")),
      el("td", {}, a.queues.join(", ")),
      el("td", {}, `${a.runs.length}/${a.concurrency} `, a.runs.slice(0, 5).map((r) =>
        el("a", { class: "mono", href: `#/runs/${r.run_id}` }, `${shortId(r.run_id)} `))),
      el("td", { class: "muted" }, `${a.hostname} (pid ${a.pid})`),
      el("td", {}, when(a.started)), el("td", {}, when(a.last_heartbeat)))));
    if (!agents.length) agentsBody.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No agent has reported.")));
  }

  await refresh();
  const soon = debounced(() => refresh().catch(() => {}), 1000);
  const stopLive = live(new URLSearchParams([["types", "flow_run.state"], ["types", "task_run.state"]]), soon);
  const timer = setInterval(soon, 5000); // heartbeats are not events
  keepLive(mine, () => { stopLive(); clearInterval(timer); });
}

// --- live event feed -----------------------------------------------------------------------------

function eventSummary(event) {
  switch (event.type) {
    case "flow_run.created":
      return [`${event.flow_name} · ${event.name}`, event.deployment ? ` (${event.deployment})` : ""];
    case "flow_run.state":
    case "task_run.created":
    case "task_run.state":
      return [event.name ? `${event.name} ` : "", badge(event.state.type, event.state.name),
        event.state.message ? el("span", { class: "muted" }, ` ${event.state.message}`) : null,
        event.agent ? el("span", { class: "muted" }, ` on ${event.agent}`) : null];
    case "log": { // one line here; the run's page has the whole message
      const first = event.message.split("\n", 1)[0];
      const cut = first.length > 160 ? `${first.slice(0, 160)}…` : first;
      return el("span", { class: "mono", title: event.message.slice(0, 2000) },
        cut + (cut === event.message ? "" : " …"));
    }
    case "deployment.saved":
      return `${event.name} → queue ${event.queue}`;
    default:
      return el("span", { class: "mono" }, JSON.stringify(event).slice(0, 200));
  }
}

async function eventsPage(query) {
  const mine = generation;
  const filters = new URLSearchParams(query);
  const chosen = new Set(filters.getAll("types"));
  const boxes = EVENT_TYPES.map((type) => {
    const box = el("input", { type: "checkbox", value: type });
    box.checked = !chosen.size || chosen.has(type);
    return el("label", { class: "check" }, box, ` ${type}`);
  });
  const runInput = el("input", { placeholder: "run id (optional)", value: filters.get("run_id") || "" });
  const apply = () => {
    const next = new URLSearchParams();
    const picked = boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);
    if (picked.length < EVENT_TYPES.length) picked.forEach((t) => next.append("types", t));
    if (runInput.value.trim()) next.set("run_id", runInput.value.trim());
    location.hash = `#/events?${next}`;
  };
  let paused = false;
  const pause = el("button", { class: "secondary", onclick: () => {
    paused = !paused;
    pause.textContent = paused ? "Resume feed" : "Pause feed";
  } }, "Pause feed");
  const tbody = el("tbody", { id: "feed" });
  const counter = el("span", { class: "muted" }, "waiting for events…");
  let seen = 0;
  const names = new Map(); // run id -> name, from the creation events the feed has shown
  show(el("h1", {}, "Event feed"),
    el("div", { class: "filters" }, boxes, runInput, el("button", { onclick: apply }, "Apply"), pause,
      counter),
    el("table", {}, el("thead", {}, el("tr", {},
      ["Time", "Type", "Run", "What"].map((h) => el("th", {}, h)))), tbody));

  const params = new URLSearchParams();
  for (const type of chosen) params.append("types", type);
  if (filters.get("run_id")) params.set("run_id", filters.get("run_id"));
  // The last minute first, then live: the page is never empty right after something happened.
  else params.set("since", new Date(Date.now() - 60000).toISOString());
  keepLive(mine, live(params, (event) => {
    seen += 1;
    counter.textContent = `${seen} events`;
    if (paused) return;
    if (event.type === "flow_run.created") names.set(event.stream_id, event.name);
    const run = event.type === "deployment.saved" ? el("span", { class: "muted" }, "–")
      : el("a", { class: names.has(event.stream_id) ? "" : "mono", href: `#/runs/${event.stream_id}` },
        names.get(event.stream_id) || shortId(event.stream_id));
    const at = Date.parse(event.occurred);
    const row = el("tr", { "data-type": event.type, "data-at": String(at) },
      el("td", { class: "muted nowrap" }, new Date(event.occurred).toLocaleTimeString()),
      el("td", { class: "mono" }, event.type), el("td", { class: "nowrap" }, run),
      el("td", {}, eventSummary(event)));
    // Newest first by when it happened, not by arrival: an orchestrator publishes a state it
    // recorded (a claim's Pending) after its commit, which can be after the agent's later ones.
    let after = tbody.firstElementChild;
    while (after && Number(after.dataset.at) > at) after = after.nextElementSibling;
    tbody.insertBefore(row, after);
    while (tbody.childElementCount > 500) tbody.lastElementChild.remove(); // the page stays light
  }));
}

// --- blocks and variables ------------------------------------------------------------------------

async function configPage() {
  const [blocks, variables] = await Promise.all([api("/blocks"), api("/variables")]);
  const value = (v) => el("span", { class: v === "********" ? "muted" : "mono" },
    typeof v === "string" ? v : JSON.stringify(v));
  show(el("h1", {}, "Blocks"),
    el("p", { class: "muted" }, "Typed configuration; secret fields are encrypted in the store and never shown. Set them with ",
      el("code", {}, "flowbus block set TYPE/NAME field=value"), "."),
    el("table", { id: "blocks" }, el("thead", {}, el("tr", {},
      ["Block", "Fields", "Version", "Updated"].map((h) => el("th", {}, h)))),
    el("tbody", {}, blocks.length ? blocks.map((b) => el("tr", { "data-block": `${b.type}/${b.name}` },
      el("td", {}, el("b", {}, b.name), el("span", { class: "muted" }, ` ${b.type}`)),
      el("td", {}, el("dl", { class: "kv" }, Object.entries(b.data).flatMap(([k, v]) =>
        [el("dt", {}, k, b.secret_fields.includes(k) ? el("span", { class: "tag" }, "secret") : null),
          el("dd", {}, value(v))]))),
      el("td", {}, b.version), el("td", {}, when(b.updated))))
      : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No blocks.")))),
    el("h1", { class: "spaced" }, "Variables"),
    el("table", { id: "variables" }, el("thead", {}, el("tr", {},
      ["Variable", "Value", "Version", "Updated"].map((h) => el("th", {}, h)))),
    el("tbody", {}, variables.length ? variables.map((v) => el("tr", { "data-variable": v.name },
      el("td", {}, el("b", {}, v.name)), el("td", {}, value(v.value)), el("td", {}, v.version),
      el("td", {}, when(v.updated))))
      : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No variables.")))));
}

// --- automations ---------------------------------------------------------------------------------

function triggerText(t) {
  const match = `${t.match.type}${Object.entries(t.match.labels || {}).map(([k, v]) => ` ${k}=${v}`).join("")}`;
  if (t.kind === "absence") return `no ${match} within ${t.within} s before cron "${t.cron}" (${t.timezone})`;
  return `${t.threshold > 1 ? `${t.threshold}× within ${t.within} s of ` : ""}${match}`;
}

async function automationsPage() {
  const mine = generation;
  await drawAutomations();
  // Firings follow events: a run an automation starts, or a state it reacts to, redraws it.
  const soon = debounced(() => { if (mine === generation) drawAutomations().catch(() => {}); }, 1000);
  const stopLive = live(new URLSearchParams([["types", "flow_run.created"], ["types", "flow_run.state"]]), soon);
  const timer = setInterval(soon, 5000); // custom events are not on this stream
  keepLive(mine, () => { stopLive(); clearInterval(timer); });
}

async function drawAutomations() {
  const mine = generation;
  const automations = await api("/automations");
  if (mine !== generation) return; // the user has moved on
  show(el("h1", {}, "Automations"),
    el("p", { class: "muted" }, "When events happen, take actions. Create them with ",
      el("code", {}, "flowbus automation create FILE.yaml"), "; a run they start links back here."),
    el("table", { id: "automations" }, el("thead", {}, el("tr", {},
      ["Automation", "Status", "When", "Then", "Last fired"].map((h) => el("th", {}, h)))),
    el("tbody", {}, automations.length ? automations.map((a) => el("tr", { "data-automation": a.name },
      el("td", {}, el("b", {}, a.name), a.description ? el("div", { class: "muted" }, a.description) : null),
      el("td", {}, a.enabled ? el("span", { class: "badge s-COMPLETED" }, "enabled")
        : el("span", { class: "badge s-PAUSED" }, "paused")),
      el("td", { class: "mono" }, triggerText(a.trigger)),
      el("td", {}, el("ul", { class: "plain" }, a.actions.map((x) => el("li", { class: "mono" },
        `${x.kind}${x.deployment ? ` ${x.deployment}` : ""}${x.queue ? ` ${x.queue}` : ""}${x.subject ? ` ${x.subject}` : ""}${x.block ? ` ${x.block}` : ""}`)))),
      el("td", {}, lastFiring(a.status))))
      : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No automations.")))));
}

function lastFiring(status) {
  if (!status) return el("span", { class: "muted" }, "never");
  const started = status.last_actions.find((x) => x.run_id);
  const failed = status.last_actions.filter((x) => !x.ok);
  return el("div", {}, `${when(status.last_fired)} (${status.fired}×)`,
    el("div", { class: "muted mono" }, `on ${status.last_event.type} ${status.last_event.id}`),
    started ? el("div", {}, "started ", el("a", { href: `#/runs/${started.run_id}` },
      started.run_name || shortId(started.run_id))) : null,
    failed.length ? el("div", { class: "field-error" },
      failed.map((x) => `${x.action}: ${x.error}`).join("; ")) : null);
}

// --- routing -------------------------------------------------------------------------------------

async function route() {
  generation += 1;
  closeLive();
  closeLive = () => {};
  const [path, query] = location.hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("[data-nav]").forEach((a) =>
    a.classList.toggle("active", a.dataset.nav === (parts[0] || "dashboard")));
  try {
    if (parts[0] === "runs" && parts[1]) await runPage(parts[1]);
    else if (parts[0] === "runs") await runsPage(query || "");
    else if (parts[0] === "deployments" && parts[1]) await deploymentPage(parts.slice(1).map(decodeURIComponent).join("/"));
    else if (parts[0] === "deployments") await deploymentsPage();
    else if (parts[0] === "queues") await queuesPage();
    else if (parts[0] === "events") await eventsPage(query || "");
    else if (parts[0] === "config") await configPage();
    else if (parts[0] === "automations") await automationsPage();
    else await dashboardPage();
  } catch (error) {
    show(el("div", { class: "notice" }, error.message));
  }
}

async function whoAmI() {
  try {
    me = await api("/me");
  } catch (error) {
    return;  // an older server: everything shown, the server decides
  }
  const who = document.getElementById("who");
  if (!who || me.via === "open") return;
  const logout = el("form", { method: "post", action: "/logout", class: "inline" },
    el("button", { type: "submit", class: "secondary small", id: "logout" }, "Log out"));
  who.replaceChildren(el("span", { class: "muted", id: "me" }, `${me.name} (${me.role}) `), logout);
}

window.addEventListener("hashchange", route);
whoAmI().then(route);
