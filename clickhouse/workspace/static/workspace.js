// Workspace pages: draws each panel from its API route with the page's state.
//
// The page's URL is its whole state (the controls are a GET form; a change submits it). Each panel
// fetches `<route>?<state>&chart=1` and draws, from that one answer, the figure (Plotly), the table
// of its rows, a CSV link (the same URL with format=csv) and the SQL that ran. Data is only ever
// placed with textContent, never parsed as HTML. With live=1 the range is the last hour, refetched.
"use strict";

(() => {
  const LIVE_REFRESH_MS = 5000;
  const LIVE_SPAN_MS = 3600 * 1000;
  const AS_OF_REFRESH_MS = 30000;
  const MAX_TABLE_ROWS = 10000;
  const ANSWER_ONLY = new Set(["chart", "format"]);
  // The warehouse runs few analyst queries at once (FS_SQL__MAX_CONCURRENT) and answers 429 beyond:
  // a page asks a few at a time, and waits and asks again when told to.
  const PANELS_AT_ONCE = 3;
  const BUSY_TRIES = 6;
  const BUSY_WAIT_MAX_MS = 5000;

  const live = () => new URLSearchParams(window.location.search).get("live") === "1";

  // The page's state as the routes read it: empty fields left out, the steps one comma-separated list.
  function stateOf(params) {
    const state = new URLSearchParams();
    const steps = [];
    for (const [name, value] of params) {
      if (name === "steps") {
        steps.push(...value.split(",").map((step) => step.trim()).filter(Boolean));
      } else if (value !== "" && !ANSWER_ONLY.has(name)) {
        state.append(name, value);
      }
    }
    if (steps.length) state.set("steps", steps.join(","));
    return state;
  }

  function pageState() {
    const state = stateOf(new URLSearchParams(window.location.search));
    if (state.get("live") === "1") {
      const now = Date.now();
      state.set("from", new Date(now - LIVE_SPAN_MS).toISOString());
      state.set("to", new Date(now).toISOString());
    }
    return state;
  }

  // The route's own parameters win over the page's of the same name.
  function panelUrl(route, state, extra) {
    const url = new URL(route, window.location.origin);
    for (const [name, value] of state) {
      if (!url.searchParams.has(name)) url.searchParams.append(name, value);
    }
    for (const [name, value] of Object.entries(extra)) url.searchParams.set(name, value);
    return url.pathname + url.search;
  }

  function problem(body, response) {
    if (body && Array.isArray(body.detail)) {
      return body.detail.map((item) => `${(item.loc || []).slice(1).join(".")}: ${item.msg}`).join("; ");
    }
    if (body && (body.detail || body.error)) return String(body.detail || body.error);
    return `${response.status} ${response.statusText}`;
  }

  function cell(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function fillTable(table, rows) {
    table.replaceChildren();
    if (!rows.length) return;
    const columns = Object.keys(rows[0]);
    const head = table.createTHead().insertRow();
    for (const column of columns) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = column;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const row of rows.slice(0, MAX_TABLE_ROWS)) {
      const tr = body.insertRow();
      for (const column of columns) tr.insertCell().textContent = cell(row[column]);
    }
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // A GET is safe to send again: after a 429, and after a network failure (a keep-alive connection
  // the server closed just as the browser reused it fails the fetch without an answer).
  async function fetchWhenFree(url) {
    for (let attempt = 1; ; attempt += 1) {
      let response;
      try {
        response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      } catch (error) {
        if (attempt >= BUSY_TRIES) throw error;
        await pause(250 * attempt);
        continue;
      }
      if (response.status !== 429 || attempt >= BUSY_TRIES) return response;
      const told = Number(response.headers.get("Retry-After")) * 1000;
      await pause(Math.min(told > 0 ? told : 500 * attempt, BUSY_WAIT_MAX_MS) + Math.random() * 250);
    }
  }

  async function draw(panel, state) {
    const route = panel.dataset.route;
    const status = panel.querySelector(".status");
    const url = panelUrl(route, state, { chart: "1" });
    try {
      const response = await fetchWhenFree(url);
      const body = await response.json().catch(() => null);
      if (!response.ok || body === null) throw new Error(problem(body, response));
      const rows = Array.isArray(body.rows) ? body.rows : [];
      const figure = panel.querySelector(".figure");
      if (body.figure && window.Plotly) {
        figure.hidden = false;
        await window.Plotly.react(figure, body.figure);
      } else {
        figure.hidden = true;
      }
      fillTable(panel.querySelector("table"), rows);
      const shown = rows.length > MAX_TABLE_ROWS ? ` (table shows the first ${MAX_TABLE_ROWS})` : "";
      status.textContent = rows.length ? `${rows.length} rows${shown}` : "no rows for this state";
      if (body.complete === false) status.textContent += " · not final yet: late events may still change it";
      panel.querySelector("[data-csv]").href = panelUrl(route, state, { format: "csv" });
      panel.querySelector(".sql pre").textContent = body.sql || "(no single statement)";
      panel.querySelector(".elapsed").textContent = body.elapsed_ms === undefined ? "" : `${body.elapsed_ms} ms`;
      panel.dataset.draws = String(Number(panel.dataset.draws || "0") + 1);
      panel.dataset.state = "drawn";
    } catch (error) {
      status.textContent = `could not draw: ${error.message}`;
      panel.querySelector(".figure").hidden = true;
      panel.dataset.state = "error";
    }
  }

  async function drawAll() {
    const state = pageState();
    const waiting = [...document.querySelectorAll("[data-panel]")];
    const worker = async () => {
      for (let panel = waiting.shift(); panel; panel = waiting.shift()) await draw(panel, state);
    };
    await Promise.all(Array.from({ length: PANELS_AT_ONCE }, worker));
  }

  // The newest heartbeat through the whole pipeline, so late data is never mistaken for missing.
  async function showAsOf() {
    const banner = document.getElementById("as-of");
    if (!banner) return;
    try {
      const response = await fetchWhenFree(banner.dataset.route);
      const body = response.ok ? await response.json() : null;
      if (!body || !body.as_of) {
        banner.textContent = "data as of: no heartbeat yet";
        banner.dataset.stale = "true";
        return;
      }
      const age = typeof body.age_s === "number" ? ` (${Math.round(body.age_s)} s ago)` : "";
      banner.textContent = `data as of ${body.as_of}${age}${body.stale ? " · behind" : ""}`;
      banner.dataset.stale = String(Boolean(body.stale));
    } catch {
      banner.textContent = "data as of: no heartbeat yet";
      banner.dataset.stale = "true";
    }
  }

  function submitControls(form) {
    const state = stateOf(new FormData(form));
    const query = state.toString();
    window.location.assign(window.location.pathname + (query ? `?${query}` : ""));
  }

  function start() {
    const form = document.getElementById("controls");
    if (form) {
      form.addEventListener("change", () => submitControls(form));
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        submitControls(form);
      });
    }
    showAsOf();
    setInterval(showAsOf, live() ? LIVE_REFRESH_MS : AS_OF_REFRESH_MS);
    const refresh = async () => {
      await drawAll();
      if (live()) setTimeout(refresh, LIVE_REFRESH_MS);
    };
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
