// devhost monitor. Vanilla JS, no dependencies.
//
// Safety rule: every value that comes from the backend or the model is put into the page
// as text (createTextNode / textContent), never parsed as HTML. `el()` below is the only
// way this file builds elements, and it has no HTML path.
"use strict";

(() => {
  const POLL_MS = 1500;
  const MESSAGE_PAGE = 200;
  const STEP_TYPES = new Set(["OrchestratorStarted", "OrchestratorCompleted"]);
  const ACTIVE = new Set(["Running", "Pending", "ContinuedAsNew"]);
  const FINISHED = new Set(["Completed", "Failed", "Terminated"]);

  const $ = (id) => document.getElementById(id);

  // el("div", {class: "x", title: "y"}, "text", childNode, [more, children])
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "open") node.open = Boolean(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else if (child instanceof Node) node.appendChild(child);
      else node.appendChild(document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function pretty(value) {
    if (typeof value === "string") return value;
    try {
      return JSON.stringify(value, null, 2);
    } catch (error) {
      return String(value);
    }
  }

  // A <details> whose open state survives re-rendering (keyed by `key`).
  const openDetails = new Set();
  function fold(key, label, value, startOpen) {
    const isOpen = openDetails.has(key) || (startOpen && !openDetails.has("closed:" + key));
    const details = el("details", { open: isOpen }, el("summary", {}, label), el("pre", {}, pretty(value)));
    details.addEventListener("toggle", () => {
      if (details.open) {
        openDetails.add(key);
        openDetails.delete("closed:" + key);
      } else {
        openDetails.delete(key);
        openDetails.add("closed:" + key);
      }
    });
    return details;
  }

  function slug(text) {
    return String(text || "").toLowerCase().replace(/[^a-z0-9]+/g, "_");
  }

  function badge(text, kind) {
    return el("span", { class: "badge " + slug(kind || text) }, text);
  }

  function ago(iso) {
    if (!iso) return "";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 5) return "just now";
    if (seconds < 60) return Math.floor(seconds) + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return new Date(iso).toLocaleDateString();
  }

  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }

  function duration(ms) {
    if (ms === undefined || ms === null) return "";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    return (ms / 60000).toFixed(1) + " min";
  }

  // What the list and the header show as "state": the thread's own state while the
  // orchestration runs, the runtime status otherwise (Suspended, Terminated, ...).
  function shownState(instance) {
    if (!ACTIVE.has(instance.runtime_status) || !instance.state) return instance.runtime_status;
    return instance.state;
  }

  // --- HTTP ------------------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function request(method, url, body) {
    const options = { method, headers: { Accept: "application/json" }, cache: "no-store" };
    // devhost's management key (only when the app runs with owners) goes to the monitor's
    // own routes, never to the app's API.
    if (managementKey && url.startsWith("api/")) options.headers["x-functions-key"] = managementKey;
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (error) {
      data = text;
    }
    if (!response.ok) {
      const detail = data && typeof data === "object" ? data.detail || data.title : null;
      throw new HttpError(response.status, detail || response.status + " " + response.statusText);
    }
    return data;
  }

  const monitorApi = (path) => "api/" + path;
  let appPrefix = "/api";
  const KEY_STORAGE = "devhost-monitor-key";
  let managementKey = sessionStorage.getItem(KEY_STORAGE);

  // /_devhost/?code=KEY: keep the key for this tab and take it out of the address bar.
  function takeKeyFromUrl() {
    const params = new URLSearchParams(location.search);
    const code = params.get("code");
    if (!code) return;
    managementKey = code;
    sessionStorage.setItem(KEY_STORAGE, code);
    params.delete("code");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
  }

  // --- state -----------------------------------------------------------------------------

  const view = {
    limit: 100,
    all: false,
    filter: "",
    instances: [],
    token: null,
    selected: null,
    detail: null,
    historyKey: null,
    history: [],
    messagesKey: null,
    messages: [],
    messagesError: null,
    entities: [],
    rendered: null,
  };

  function setLive(ok, text) {
    $("live").dataset.state = ok ? "live" : "down";
    $("live-text").textContent = text;
  }

  let flashTimer = null;
  function flash(text, isError) {
    const box = $("flash");
    box.textContent = text;
    box.className = "flash" + (isError ? " error" : "");
    box.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => {
      box.hidden = true;
    }, isError ? 8000 : 3500);
  }

  // --- thread list -----------------------------------------------------------------------

  async function loadList() {
    const query = "instances?limit=" + view.limit + (view.all ? "&all=1" : "");
    const data = await request("GET", monitorApi(query));
    view.instances = data.instances;
    view.token = data.continuation_token;
    renderList();
  }

  function renderList() {
    const needle = view.filter.trim().toLowerCase();
    const rows = view.instances.filter((i) => {
      if (!needle) return true;
      return [i.instance_id, i.agent, shownState(i), i.name].some((v) => String(v || "").toLowerCase().includes(needle));
    });
    const body = $("threads").tBodies[0];
    clear(body);
    for (const instance of rows) {
      const state = shownState(instance);
      const stateCell = el("td", {}, badge(state));
      if (instance.pending_approvals) {
        stateCell.appendChild(document.createTextNode(" "));
        stateCell.appendChild(badge(instance.pending_approvals + " to approve", "awaiting_approval"));
      }
      const row = el(
        "tr",
        {
          class: instance.instance_id === view.selected ? "selected" : "",
          "data-id": instance.instance_id,
          tabindex: 0,
          onclick: () => select(instance.instance_id),
          onkeydown: (key) => {
            if (key.key === "Enter" || key.key === " ") {
              key.preventDefault();
              select(instance.instance_id);
            }
          },
        },
        el("td", { class: "id", title: instance.instance_id }, instance.instance_id),
        el("td", {}, instance.agent || (view.all ? instance.name : "")),
        stateCell,
        el("td", { class: "num" }, instance.turn ?? ""),
        el("td", { class: "when", title: instance.last_updated_at || "" }, ago(instance.last_updated_at)),
      );
      body.appendChild(row);
    }
    $("thread-count").textContent = view.instances.length ? String(view.instances.length) : "";
    const empty = $("threads-empty");
    empty.hidden = rows.length > 0;
    clear(empty);
    if (!view.instances.length) {
      append(empty, ["No threads yet. Start one with ", el("code", {}, "POST " + appPrefix + "/threads"), "."]);
    } else {
      empty.textContent = "No thread matches the filter.";
    }
    $("more").hidden = !view.token;
  }

  // --- one thread ------------------------------------------------------------------------

  function select(id) {
    if (id === view.selected) return;
    view.selected = id;
    view.detail = null;
    view.history = [];
    view.historyKey = null;
    view.messages = [];
    view.messagesKey = null;
    view.messagesError = null;
    view.entities = [];
    view.rendered = null;
    openDetails.clear();
    const hash = "#/thread/" + encodeURIComponent(id);
    if (location.hash !== hash) history.replaceState(null, "", hash);
    $("event-error").textContent = "";
    $("flash").hidden = true;
    renderList();
    renderDetail();
    refreshDetail().catch(() => {});
  }

  function selectedFromHash() {
    const match = /^#\/thread\/(.+)$/.exec(location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  async function loadDetail() {
    const id = view.selected;
    if (!id) return;
    let detail;
    try {
      detail = await request("GET", monitorApi("instances/" + encodeURIComponent(id)));
    } catch (error) {
      if (error.status === 404 && id === view.selected) {
        view.detail = { instance_id: id, missing: true };
        renderDetail();
        return;
      }
      throw error;
    }
    if (id !== view.selected) return;
    view.detail = detail;
    const key = detail.last_updated_at + "|" + detail.runtime_status;
    const jobs = [];
    if (key !== view.historyKey) jobs.push(loadHistory(id, key));
    if (key !== view.messagesKey) jobs.push(loadMessages(id, key));
    await Promise.all(jobs);
    renderDetail();
  }

  async function loadHistory(id, key) {
    const [history, entities] = await Promise.all([
      request("GET", monitorApi("instances/" + encodeURIComponent(id) + "/history")),
      request("GET", monitorApi("instances/" + encodeURIComponent(id) + "/entities")).catch(() => ({ entities: [] })),
    ]);
    if (id !== view.selected) return;
    view.history = history.events;
    view.entities = entities.entities;
    view.historyKey = key;
  }

  // Messages come from the app's public API, page by page (`next_after`).
  async function loadMessages(id, key) {
    const entries = [];
    let after = 0;
    try {
      for (let guard = 0; guard < 1000; guard++) {
        const url = appPrefix + "/threads/" + encodeURIComponent(id) + "/messages?after=" + after + "&limit=" + MESSAGE_PAGE;
        const page = await request("GET", url);
        const batch = page.messages || page.entries || [];
        entries.push(...batch);
        if (page.next_after === null || page.next_after === undefined || !batch.length) break;
        after = page.next_after;
      }
      view.messagesError = null;
    } catch (error) {
      if (id !== view.selected) return;
      view.messagesError = error.status === 404 ? "The app has no messages for this instance." : String(error.message);
      view.messagesKey = key;
      return;
    }
    if (id !== view.selected) return;
    view.messages = entries;
    view.messagesKey = key;
  }

  function renderDetail() {
    const detail = view.detail;
    $("placeholder").hidden = Boolean(view.selected);
    $("thread").hidden = !view.selected;
    if (!view.selected) return;
    $("t-id").textContent = view.selected;
    const meta = $("t-meta");
    clear(meta);
    if (!detail) {
      meta.textContent = "loading…";
      return;
    }
    if (detail.missing) {
      meta.textContent = "This instance no longer exists (purged).";
      view.rendered = null;
      for (const button of document.querySelectorAll("[data-action]")) button.disabled = true;
      $("thread-body").hidden = true;
      return;
    }
    $("thread-body").hidden = false;
    const sep = () => el("span", { class: "sep" }, "·");
    append(meta, [
      el("span", { id: "t-runtime" }, badge(detail.runtime_status)),
      detail.state ? el("span", { id: "t-state" }, badge(detail.state)) : null,
      detail.agent ? [sep(), el("span", {}, "agent ", el("strong", {}, detail.agent))] : null,
      detail.turn !== null && detail.turn !== undefined ? [sep(), el("span", {}, "turn " + detail.turn)] : null,
      [sep(), el("span", { title: "created " + detail.created_at }, "updated " + ago(detail.last_updated_at))],
    ]);
    const status = detail.runtime_status;
    const enabled = {
      suspend: ACTIVE.has(status),
      resume: status === "Suspended",
      terminate: ACTIVE.has(status) || status === "Suspended",
      purge: FINISHED.has(status),
    };
    for (const button of document.querySelectorAll("[data-action]")) {
      button.disabled = !enabled[button.dataset.action];
    }
    // The sections below are rebuilt only when what they show changed, so scroll
    // positions, selections and open <details> stay put between polls.
    const signature = JSON.stringify([detail, view.history, view.messages, view.messagesError, view.entities]);
    if (signature === view.rendered) return;
    view.rendered = signature;
    renderApprovals(detail);
    renderMessages();
    renderTimeline();
    renderState(detail);
  }

  let renderedApprovals = null;

  function renderApprovals(detail) {
    const approvals = detail.approvals || [];
    $("approvals").hidden = approvals.length === 0;
    // Re-render only when the approvals change: a refresh must not swap the buttons out
    // from under a click.
    const key = view.selected + "\n" + JSON.stringify(approvals);
    if (key === renderedApprovals) return;
    renderedApprovals = key;
    const list = $("approval-list");
    clear(list);
    for (const approval of approvals) {
      const callId = String(approval.call_id ?? "");
      list.appendChild(
        el(
          "li",
          { class: "approval", "data-call-id": callId },
          el(
            "div",
            { class: "approval-body" },
            el("span", { class: "tool" }, String(approval.tool ?? "tool")),
            el("span", { class: "call" }, callId),
            el("pre", {}, pretty(approval.arguments ?? {})),
          ),
          el(
            "div",
            { class: "buttons" },
            el("button", { type: "button", class: "btn btn-approve", onclick: () => decide(callId, true) }, "Approve"),
            el("button", { type: "button", class: "btn btn-deny", onclick: () => decide(callId, false) }, "Deny"),
          ),
        ),
      );
    }
  }

  function messageInfo(entry) {
    const parts = [];
    if (entry.created_at) parts.push(clock(entry.created_at));
    if (entry.model) parts.push(entry.model);
    if (entry.latency_ms !== undefined && entry.latency_ms !== null) parts.push(duration(entry.latency_ms));
    const usage = entry.usage;
    if (usage && typeof usage === "object" && usage.total_tokens !== undefined) parts.push(usage.total_tokens + " tokens");
    if (entry.finish_reason && entry.finish_reason !== "stop") parts.push(entry.finish_reason);
    return parts.join(" · ");
  }

  function renderMessages() {
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    clear(box);
    if (view.messagesError) {
      box.appendChild(el("p", { class: "muted" }, view.messagesError));
    }
    const conversation = view.messages.filter((m) => m.role !== "system");
    $("message-count").textContent = conversation.length ? String(conversation.length) : "";
    if (!view.messages.length && !view.messagesError) {
      box.appendChild(el("p", { class: "muted" }, "No messages yet."));
    }
    for (const entry of view.messages) {
      const key = "msg:" + entry.seq;
      if (entry.role === "system") {
        box.appendChild(fold(key, "system prompt", entry.content ?? "", false));
        continue;
      }
      const role = String(entry.role || "message");
      const failed = entry.error && typeof entry.error === "object";
      const text = failed
        ? (entry.error.code ? entry.error.code + ": " : "") + (entry.error.message ?? "")
        : typeof entry.content === "string"
          ? entry.content
          : pretty(entry.content ?? "");
      const extras = [];
      if (entry.tool_calls) extras.push(fold(key + ":calls", "tool calls", entry.tool_calls, false));
      if (role === "tool" && (entry.tool || entry.call_id)) {
        extras.push(el("div", { class: "info" }, [entry.tool, entry.call_id].filter(Boolean).join(" · ")));
      }
      box.appendChild(
        el(
          "div",
          { class: "msg " + slug(role) + (failed ? " error" : ""), "data-seq": entry.seq },
          el("div", { class: "who" }, failed ? role + " · error" : role),
          el("div", { class: "bubble" }, text),
          el("div", { class: "info" }, messageInfo(entry)),
          extras,
        ),
      );
    }
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function eventKind(type) {
    if (STEP_TYPES.has(type)) return "step";
    if (/Failed|Terminated/.test(type)) return "fail";
    if (/^Execution|ContinueAsNew/.test(type)) return /Suspended|Resumed/.test(type) ? "control" : "start";
    if (/^Entity/.test(type)) return "entity";
    if (/^Timer/.test(type)) return "timer";
    if (/^Event/.test(type)) return "event";
    return "task";
  }

  function renderTimeline() {
    const list = $("timeline");
    // follow the newest event unless the reader scrolled up
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    clear(list);
    const showSteps = $("show-steps").checked;
    const rows = view.history.filter((e) => showSteps || !STEP_TYPES.has(e.type));
    $("event-count").textContent = view.history.length ? String(view.history.length) : "";
    if (!rows.length) list.appendChild(el("li", { class: "muted" }, "No history yet."));
    for (const event of rows) {
      const key = "ev:" + event.index;
      const payloads = [];
      for (const field of ["input", "result", "output", "data"]) {
        if (event[field] !== undefined && event[field] !== null) payloads.push(fold(key + ":" + field, field, event[field], false));
      }
      if (event.failure) payloads.push(fold(key + ":failure", "failure", event.failure, false));
      if (event.details && Object.keys(event.details).length) payloads.push(fold(key + ":details", "details", event.details, false));
      const link =
        event.completes !== undefined
          ? el("span", { class: "link" }, "↳ #" + event.completes)
          : event.completed_by !== undefined
            ? el("span", { class: "link" }, "→ #" + event.completed_by)
            : null;
      list.appendChild(
        el(
          "li",
          { class: "ev kind-" + eventKind(event.type), "data-type": event.type, title: event.timestamp },
          el("span", { class: "t" }, clock(event.timestamp)),
          el(
            "span",
            { class: "what" },
            el("span", { class: "type" }, "#" + event.index + " " + event.type),
            event.name ? el("span", { class: "name" }, event.name) : null,
            link,
          ),
          event.duration_ms !== undefined && event.duration_ms !== null
            ? el("span", { class: "dur", title: "scheduled → completed" }, duration(event.duration_ms))
            : event.open
              ? el("span", { class: "dur open", title: "not completed yet" }, "waiting")
              : el("span", {}),
          payloads.length ? el("div", { class: "payloads" }, payloads) : null,
        ),
      );
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function renderState(detail) {
    const box = $("state");
    clear(box);
    box.appendChild(
      el(
        "dl",
        {},
        el("dt", {}, "orchestration"),
        el("dd", {}, detail.name),
        el("dt", {}, "runtime status"),
        el("dd", {}, detail.runtime_status),
        el("dt", {}, "created"),
        el("dd", {}, detail.created_at || ""),
        el("dt", {}, "last updated"),
        el("dd", {}, detail.last_updated_at || ""),
      ),
    );
    box.appendChild(fold("state:custom", "custom status", detail.custom_status, true));
    box.appendChild(fold("state:input", "input", detail.input, false));
    if (detail.output !== null && detail.output !== undefined) box.appendChild(fold("state:output", "output", detail.output, false));
    if (detail.failure) box.appendChild(fold("state:failure", "failure", detail.failure, true));
    for (const entity of view.entities) {
      box.appendChild(fold("state:entity:" + entity.id, "entity " + entity.id, entity, false));
    }
  }

  // --- actions ---------------------------------------------------------------------------

  async function act(action) {
    const id = view.selected;
    if (!id) return;
    if (action === "terminate" && !confirm("Terminate " + id + "? The thread stops for good.")) return;
    if (action === "purge" && !confirm("Purge " + id + "? Its orchestration history is deleted.")) return;
    try {
      await request("POST", monitorApi("instances/" + encodeURIComponent(id) + "/" + action), {});
      flash(action + " sent to " + id);
    } catch (error) {
      flash(action + " failed: " + error.message, true);
    }
    await refreshAll();
  }

  async function decide(callId, approve) {
    const id = view.selected;
    const url = appPrefix + "/threads/" + encodeURIComponent(id) + "/approvals/" + encodeURIComponent(callId);
    try {
      await request("POST", url, { approve });
      flash((approve ? "Approved " : "Denied ") + callId);
    } catch (error) {
      flash("Approval failed: " + error.message, true);
    }
    await refreshAll();
  }

  async function raiseEvent(submit) {
    submit.preventDefault();
    const id = view.selected;
    const name = $("event-name").value.trim();
    const raw = $("event-data").value.trim();
    const errorBox = $("event-error");
    errorBox.textContent = "";
    let data = null;
    if (raw) {
      try {
        data = JSON.parse(raw);
      } catch (error) {
        errorBox.textContent = "Data is not valid JSON: " + error.message;
        return;
      }
    }
    try {
      await request("POST", monitorApi("instances/" + encodeURIComponent(id) + "/raise-event"), { name, data });
      flash("Event '" + name + "' raised on " + id);
    } catch (error) {
      errorBox.textContent = error.message;
    }
    await refreshAll();
  }

  // --- polling ---------------------------------------------------------------------------

  async function refreshDetail() {
    await loadDetail();
  }

  async function refreshAll() {
    try {
      await Promise.all([loadList(), refreshDetail()]);
      setLive(true, "live · " + new Date().toLocaleTimeString());
    } catch (error) {
      setLive(false, error.status ? error.message : "devhost unreachable: " + error.message);
    }
  }

  async function loop() {
    await refreshAll();
    setTimeout(loop, POLL_MS);
  }

  async function start() {
    takeKeyFromUrl();
    try {
      const config = await request("GET", monitorApi("config"));
      appPrefix = config.api_prefix;
      if (config.key_required && !managementKey) {
        setLive(false, "needs the management key: open /_devhost/?code=KEY (devhost prints it at startup)");
      }
    } catch (error) {
      setLive(false, "devhost unreachable: " + error.message);
    }
    document.querySelectorAll("[data-action]").forEach((button) => {
      button.addEventListener("click", () => act(button.dataset.action));
    });
    $("event-form").addEventListener("submit", raiseEvent);
    $("show-steps").addEventListener("change", renderTimeline);
    $("show-all").addEventListener("change", (e) => {
      view.all = e.target.checked;
      refreshAll();
    });
    $("filter").addEventListener("input", (e) => {
      view.filter = e.target.value;
      renderList();
    });
    $("more").addEventListener("click", () => {
      view.limit += 100;
      refreshAll();
    });
    window.addEventListener("hashchange", () => {
      const id = selectedFromHash();
      if (id) select(id);
    });
    const initial = selectedFromHash();
    if (initial) select(initial);
    renderDetail();
    loop();
  }

  start();
})();
