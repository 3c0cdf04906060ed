/*! Funnelstream tracker: funnel events from the browser, no dependencies. Apache-2.0 */
(function (root) {
  "use strict";
  var VERSION = "0.1.0";
  var QUEUE_KEY = "fs_queue";
  var ID_KEY = "fs_anonymous_id";
  var MAX_BATCH = 500; // the collector's limit per request
  var cfg = null;
  var queue = [];
  var userId = null;
  var experiments = {};
  var timer = null;
  var inFlight = false;
  var failures = 0;

  function uuid() {
    if (root.crypto && root.crypto.randomUUID) return root.crypto.randomUUID();
    var b = new Uint8Array(16);
    root.crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function store(key, value) {
    try {
      if (value === undefined) return root.localStorage.getItem(key);
      root.localStorage.setItem(key, value);
    } catch (e) { /* private mode or quota: keep working from memory */ }
    return null;
  }

  function persist() { store(QUEUE_KEY, JSON.stringify(queue)); }

  function anonymousId() {
    var id = store(ID_KEY);
    if (!id) { id = uuid(); store(ID_KEY, id); }
    return id;
  }

  function body(events) {
    var sentAt = new Date().toISOString();
    return JSON.stringify({
      writeKey: cfg.writeKey,
      batch: events.map(function (e) { var c = {}; for (var k in e) c[k] = e[k]; c.sent_at = sentAt; return c; })
    });
  }

  function drop(events) {
    var sent = {};
    events.forEach(function (e) { sent[e.event_id] = 1; });
    queue = queue.filter(function (e) { return !sent[e.event_id]; });
    persist();
  }

  function schedule(delay) {
    if (timer) return;
    timer = setTimeout(function () { timer = null; flush(); }, delay);
  }

  function backoff(retryAfterS) {
    failures += 1;
    var base = Math.min(cfg.maxBackoffMs, cfg.flushIntervalMs * Math.pow(2, failures));
    var delay = base / 2 + Math.random() * base / 2; // jitter keeps many tabs from retrying in step
    schedule(Math.max(delay, (retryAfterS || 0) * 1000));
  }

  function flush() {
    if (!cfg || inFlight || !queue.length) return Promise.resolve();
    if (root.navigator && root.navigator.onLine === false) return Promise.resolve();
    var events = queue.slice(0, Math.min(cfg.batchSize, MAX_BATCH));
    inFlight = true;
    // text/plain keeps this a simple request: no CORS preflight, the same shape as a beacon.
    return root.fetch(cfg.endpoint + "/v1/batch", {
      method: "POST", body: body(events), keepalive: true, headers: { "Content-Type": "text/plain" }
    }).then(function (res) {
      inFlight = false;
      if (res.status === 429 || res.status >= 500) return backoff(Number(res.headers.get("Retry-After")));
      // 2xx: stored (invalid ones are in the dead-letter queue with their reason); other 4xx will never pass.
      failures = 0;
      drop(events);
      if (queue.length) schedule(0);
    }, function () {
      inFlight = false;
      backoff(0);
    });
  }

  function beacon() {
    if (!cfg || !queue.length || !root.navigator.sendBeacon) return;
    var events = queue.slice(0, MAX_BATCH);
    var blob = new Blob([body(events)], { type: "text/plain" });
    if (root.navigator.sendBeacon(cfg.endpoint + "/v1/batch", blob)) drop(events);
  }

  function init(writeKey, endpoint, options) {
    options = options || {};
    cfg = {
      writeKey: writeKey,
      endpoint: String(endpoint || "").replace(/\/$/, ""),
      batchSize: options.batchSize || 20,
      flushIntervalMs: options.flushIntervalMs || 2000,
      maxBackoffMs: options.maxBackoffMs || 60000,
      maxQueue: options.maxQueue || 5000
    };
    try { queue = JSON.parse(store(QUEUE_KEY) || "[]"); } catch (e) { queue = []; }
    root.addEventListener("pagehide", beacon);
    root.addEventListener("visibilitychange", function () { if (root.document.visibilityState === "hidden") beacon(); });
    root.addEventListener("online", function () { failures = 0; flush(); });
    if (queue.length) schedule(0);
    return api;
  }

  function track(type, props) {
    if (!cfg) throw new Error("funnelstream: call init(writeKey, endpoint) first");
    var doc = root.document, nav = root.navigator;
    var event = {
      event_id: uuid(),
      event_type: type,
      schema_version: 1,
      anonymous_id: anonymousId(),
      client_ts: new Date().toISOString(),
      context: {
        page_url: root.location.href, referrer: doc.referrer || undefined, user_agent: nav.userAgent,
        locale: nav.language, library_name: "funnelstream.js", library_version: VERSION
      },
      experiments: JSON.parse(JSON.stringify(experiments))
    };
    if (userId) event.user_id = userId;
    for (var k in props || {}) event[k] = props[k];
    queue.push(event);
    if (queue.length > cfg.maxQueue) queue.splice(0, queue.length - cfg.maxQueue);
    persist();
    if (queue.length >= cfg.batchSize) flush(); else schedule(cfg.flushIntervalMs);
    return event.event_id;
  }

  var api = {
    init: init,
    track: track,
    flush: flush,
    identify: function (id) { userId = id; },
    setExperiment: function (key, variant) { experiments[key] = variant; },
    experiments: function () { return JSON.parse(JSON.stringify(experiments)); },
    anonymousId: anonymousId,
    pending: function () { return queue.length; },
    version: VERSION
  };
  root.funnelstream = api;
})(typeof window !== "undefined" ? window : this);
