// leptonkit console: small vanilla JavaScript for what a server-rendered page cannot do alone: stream a chat reply,
// draw word attributions, refresh the operations numbers. No framework, no build step, no storage: the session is
// an HttpOnly cookie the browser sends by itself; state-changing calls carry the page's CSRF token in a header.
"use strict";

(() => {
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const BASE = meta("console-base");
  const CSRF = meta("csrf-token");

  async function errorMessage(response) {
    try {
      const body = await response.json();
      return (body.error && body.error.message) || `HTTP ${response.status}`;
    } catch (_) {
      return `HTTP ${response.status}`;
    }
  }

  function postJson(path, body) {
    return fetch(BASE + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(body),
    });
  }

  function showError(element, message) {
    if (!element) return;
    element.textContent = message || "";
    element.hidden = !message;
  }

  // ------------------------------------------------------------------------------------------ model pickers
  async function loadModels() {
    const selects = document.querySelectorAll("select.model-select");
    if (!selects.length) return;
    const status = document.getElementById("models-status");
    const response = await fetch(BASE + "/api/models", { credentials: "same-origin" });
    if (!response.ok) {
      status.textContent = await errorMessage(response);
      status.className = "error";
      return;
    }
    const models = (await response.json()).data || [];
    status.textContent = `${models.length} model(s) served.`;
    for (const select of selects) {
      const tasks = select.dataset.task.split(" ");
      if (select.dataset.optional) select.append(new Option("(none)", ""));
      for (const model of models) {
        if (tasks.includes(model.task)) {
          select.append(new Option(model.parent ? `${model.id} (adapter on ${model.parent})` : model.id, model.id));
        }
      }
    }
  }

  // ------------------------------------------------------------------------------------------ chat
  async function streamChat(body, out) {
    out.textContent = "";
    out.dataset.events = "0";
    out.dataset.reads = "0";
    out.dataset.done = "0";
    const response = await postJson("/api/chat", body);
    if (!response.ok) throw new Error(await errorMessage(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out.dataset.reads = String(Number(out.dataset.reads) + 1);
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (!line.startsWith("data: ")) continue;
        const payload = line.slice(6);
        if (payload === "[DONE]") continue;
        const event = JSON.parse(payload);
        if (event.error) throw new Error(event.error.message);
        const choice = (event.choices || [])[0] || {};
        const piece = (choice.delta || {}).content;
        if (piece) {
          out.textContent += piece;
          out.dataset.events = String(Number(out.dataset.events) + 1);
        }
        if (choice.finish_reason) out.dataset.finish = choice.finish_reason;
      }
    }
    out.dataset.done = "1";
  }

  function setupChat() {
    const form = document.getElementById("chat");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = new FormData(form);
      const messages = [];
      if (f.get("system")) messages.push({ role: "system", content: f.get("system") });
      messages.push({ role: "user", content: f.get("message") });
      const body = { messages, temperature: Number(f.get("temperature")), top_p: Number(f.get("top_p")),
                     max_tokens: Number(f.get("max_tokens")) };
      if (f.get("seed") !== "") body.seed = Number(f.get("seed"));
      const panes = [[f.get("model"), "a"]];
      if (f.get("model_b")) panes.push([f.get("model_b"), "b"]);
      document.getElementById("pane-b").hidden = panes.length < 2;
      showError(document.getElementById("chat-error"), "");
      const results = await Promise.allSettled(panes.map(([model, pane]) => {
        document.querySelector(`.label-${pane}`).textContent = model;
        return streamChat({ ...body, model }, document.getElementById(`reply-${pane}`));
      }));
      const failed = results.map((r, i) => r.status === "rejected" ? `${panes[i][0]}: ${r.reason.message}` : null);
      showError(document.getElementById("chat-error"), failed.filter(Boolean).join("; "));
    });
  }

  // ------------------------------------------------------------------------------------------ attributions
  const GREEN = [22, 163, 74];
  const RED = [220, 38, 38];

  function highlighted(text, attributions) {
    const block = document.createElement("p");
    block.className = "explained";
    const scale = Math.max(0, ...attributions.map((a) => Math.abs(a.score)));
    let cursor = 0;
    for (const item of [...attributions].sort((a, b) => a.start - b.start)) {
      if (item.start > cursor) block.append(text.slice(cursor, item.start));
      const span = document.createElement("span");
      span.className = "hl";
      span.textContent = text.slice(item.start, item.end);
      span.dataset.score = String(item.score);
      span.dataset.word = item.word;
      span.title = `${item.word}: ${item.score >= 0 ? "+" : ""}${item.score.toFixed(4)}`;
      const strength = scale > 0 ? Math.abs(item.score) / scale : 0;
      const [r, g, b] = item.score >= 0 ? GREEN : RED;
      span.style.backgroundColor = `rgba(${r}, ${g}, ${b}, ${strength.toFixed(4)})`;
      block.append(span);
      cursor = item.end;
    }
    if (cursor < text.length) block.append(text.slice(cursor));
    return block;
  }

  function renderTask(container, model, task, text, result) {
    container.replaceChildren();
    const title = document.createElement("h3");
    title.textContent = model;
    container.append(title);
    const item = (result.data || [])[0] || {};
    const sections = task === "ner"
      ? (item.entities || []).map((e) => [`${e.type} “${e.text}” (score ${e.score.toFixed(3)})`, e.attributions || []])
      : [[`${item.label} (score ${Number(item.score).toFixed(3)})`, item.attributions || []]];
    if (!sections.length) container.append("no entities found");
    for (const [heading, attributions] of sections) {
      const label = document.createElement("p");
      label.className = "prediction";
      label.textContent = heading;
      container.append(label, highlighted(text, attributions));
    }
  }

  function setupTask() {
    const form = document.getElementById("task");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = new FormData(form);
      const text = f.get("text");
      const task = f.get("task");
      const panes = [[f.get("model"), "a"]];
      if (f.get("model_b")) panes.push([f.get("model_b"), "b"]);
      document.getElementById("explained-b").hidden = panes.length < 2;
      const errors = [];
      await Promise.all(panes.map(async ([model, pane]) => {
        const container = document.getElementById(`explained-${pane}`);
        container.textContent = "explaining…";
        const response = await postJson("/api/task", { model, text, task });
        if (!response.ok) {
          container.textContent = "";
          errors.push(`${model}: ${await errorMessage(response)}`);
          return;
        }
        renderTask(container, model, task, text, await response.json());
      }));
      showError(document.getElementById("task-error"), errors.join("; "));
    });
  }

  // ------------------------------------------------------------------------------------------ operations
  function formatted(value, unit) {
    if (value === null || value === undefined) return "–";
    if (unit === "ms") return `${(value * 1000).toFixed(1)} ms`;
    if (unit === "%") return `${(value * 100).toFixed(1)}%`;
    if (unit === "bytes") return value < 1048576 ? `${(value / 1024).toFixed(0)} KB` : `${(value / 1048576).toFixed(0)} MB`;
    return Number.isInteger(value) ? String(value) : value.toFixed(2);
  }

  function setupOperations() {
    const root = document.getElementById("ops");
    if (!root) return;
    const interval = Number(root.dataset.interval) || 2000;
    let timer = null;
    async function poll() {
      const response = await fetch(root.dataset.url, { credentials: "same-origin" });
      const problem = document.getElementById("ops-problem");
      if (!response.ok) {
        showError(problem, await errorMessage(response));
        if (response.status === 401) clearInterval(timer);
        return;
      }
      const body = await response.json();
      showError(problem, body.problem);
      const summary = body.summary || {};
      for (const cell of root.querySelectorAll("[data-field]")) {
        cell.textContent = formatted(summary[cell.dataset.field], cell.dataset.unit);
      }
      const rows = Object.entries(summary.models || {}).map(([model, m]) => {
        const row = document.createElement("tr");
        for (const value of [model, formatted(m.running), formatted(m.waiting), formatted(m.memory_bytes, "bytes")]) {
          const cell = document.createElement("td");
          cell.textContent = value;
          row.append(cell);
        }
        return row;
      });
      document.querySelector("#ops-models tbody").replaceChildren(...rows);
      for (const alert of body.alerts || []) {
        const row = document.querySelector(`tr[data-alert="${CSS.escape(alert.name)}"]`);
        if (!row) continue;
        const state = row.querySelector(".state");
        state.textContent = alert.state;
        state.className = `state ${alert.state.replace(" ", "-")}`;
        row.querySelector(".value").textContent = formatted(alert.value);
        row.querySelector(".threshold").textContent = formatted(alert.threshold);
      }
      root.dataset.polls = String(Number(root.dataset.polls || 0) + 1);
      document.getElementById("ops-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    }
    poll();
    timer = setInterval(poll, interval);
  }

  document.addEventListener("DOMContentLoaded", () => {
    loadModels();
    setupChat();
    setupTask();
    setupOperations();
  });
})();
