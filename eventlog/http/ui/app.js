"use strict";
/* eventlog inspector: the run list and a run's live tail, in plain JavaScript (no build step).
 *
 * Routes are in the hash (#/ and #/runs/<id>, optionally ?after=<id>) so a reload stays put.
 * Data comes from the HTTP API with the token kept in localStorage: as a Bearer header on fetch,
 * as ?access_token= on EventSource (which cannot set headers).
 *
 * A run's page reads the run's history as JSON pages, then tails it with an EventSource opened
 * after the last id read. EventSource only dispatches the event names it has listeners for, so
 * the page listens for every name it has seen (and the common LangGraph ones); a watchdog that
 * refreshes the run's summary notices events the stream did not deliver (a name never seen
 * before) and reads them as JSON, which teaches the stream their name. Every id is shown once:
 * the stream's events at or below the last id shown are ignored, and the JSON reads skip ids
 * already shown.
 */
(() => {
  const TOKEN_KEY = "eventlog.token";
  const POLL_MS = 2000;
  const READ_PAGE = 1000; // the API's largest page of events
  const LIST_LIMIT = 1000; // the API's largest page of runs: the list shows the newest
  const MAX_ROWS = 1000; // events kept on the page; older ones leave it (the count says so)
  const COMMON_NAMES = [
    "values", "updates", "messages", "messages/partial", "messages/complete", "messages/metadata",
    "metadata", "custom", "debug", "events", "tasks", "checkpoints", "message",
  ];
  const STREAM_FRAMES = new Set(["end", "gap", "error"]); // the stream's own frames
  // The API's root: the page is served at <root>ui/.
  const ROOT = location.pathname.replace(/ui\/(index\.html)?$/, "");

  const $ = (id) => document.getElementById(id);

  // ---- the API -------------------------------------------------------------------------

  const token = () => localStorage.getItem(TOKEN_KEY) || "";

  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status; // 0: the server could not be reached
      this.code = code;
    }
    /** Worth retrying: the server is down or restarting, not refusing. */
    get transient() { return this.status === 0 || this.status >= 500; }
  }

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    let response;
    try {
      response = await fetch(ROOT + path, { headers, cache: "no-store" });
    } catch {
      throw new ApiFailure(0, "unreachable", "the server cannot be reached");
    }
    if (response.ok) return response.json();
    let code = "http_error", message = response.statusText;
    try {
      ({ code, message } = (await response.json()).error);
    } catch { /* not our JSON error body: keep the status text */ }
    throw new ApiFailure(response.status, code, message);
  }

  function explain(failure) {
    switch (failure.status) {
      case 0: return "The server cannot be reached; retrying…";
      case 401: return `Not signed in (401): ${failure.message}. Enter an API key or a reader token above.`;
      case 403: return `Not allowed (403): ${failure.message}.`;
      case 404: return `Not found (404): ${failure.message}.`;
      default: return `Error ${failure.status} (${failure.code}): ${failure.message}`;
    }
  }

  function alertText(text) {
    $("alert").textContent = text;
    $("alert").hidden = !text;
  }

  // ---- formatting ----------------------------------------------------------------------

  function size(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function age(seconds) {
    const s = Math.max(0, Date.now() / 1000 - seconds);
    if (s < 60) return `${Math.floor(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }

  const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
  function stamp(seconds) {
    const d = new Date(seconds * 1000), two = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${clock(seconds)}`;
  }
  const number = (n) => n.toLocaleString("en-US");

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function badge(run) {
    const node = element("span", `badge ${run.status}`, run.status);
    if (run.end_reason !== null) node.title = `reason: ${run.end_reason}`;
    return node;
  }

  function parse(data) {
    try { return JSON.parse(data); } catch { return data; }
  }

  const runPath = (runId) => `runs/${encodeURIComponent(runId)}`;

  // ---- the token -----------------------------------------------------------------------

  /** What the token is, for the person who entered it: a reader token's run globs, read
   * from its (unverified: the server checks it) payload, or a key. */
  function describeToken(value) {
    if (!value) return "No token";
    const parts = value.split(".");
    if (parts.length !== 3) return "API key set";
    try {
      const payload = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
      return `Reader token: ${payload.eventlog.subscribe.join(", ")}`;
    } catch {
      return "Token set";
    }
  }

  function showTokenState() {
    $("token-state").textContent = describeToken(token());
    $("token-forget").hidden = !token();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    localStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    showTokenState();
    route();
  });

  $("token-forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    showTokenState();
    route();
  });

  // ---- the run list --------------------------------------------------------------------

  function runRow(run) {
    const row = element("tr");
    row.dataset.runId = run.run_id;
    const link = element("a", "", run.run_id);
    link.href = `#/${runPath(run.run_id)}`;
    const id = element("td", "id");
    id.append(link);
    const status = element("td");
    status.append(badge(run));
    const cells = [
      [number(run.event_count), "num"], [number(run.first_id), "num"], [number(run.last_id), "num"],
      [size(run.total_bytes), "num"], [age(run.created_at), "num"],
      [run.metadata.thread_id === undefined ? "–" : String(run.metadata.thread_id), ""],
    ].map(([text, className]) => element("td", className, text));
    row.append(id, status, ...cells);
    row.addEventListener("click", () => { location.hash = link.getAttribute("href"); });
    return row;
  }

  function listView() {
    $("list-view").hidden = false;
    $("run-view").hidden = true;
    document.title = "Runs · eventlog";
    let runs = [], timer = null, stopped = false, inflight = false, again = false;

    function render() {
      const needle = $("id-filter").value.trim();
      const shown = runs.filter((run) => run.run_id.includes(needle));
      $("runs-body").replaceChildren(...shown.map(runRow));
      const empty = $("runs-empty");
      empty.hidden = shown.length > 0;
      empty.textContent = runs.length ? "No run matches the filter." : "No runs to show.";
    }

    async function poll() {
      if (inflight) { again = true; return; }
      inflight = true;
      clearTimeout(timer);
      try {
        const status = $("status-filter").value;
        const body = await api(`runs?limit=${LIST_LIMIT}${status ? `&status=${status}` : ""}`);
        if (stopped) return;
        runs = body.runs;
        alertText("");
        const newest = runs.length === LIST_LIMIT ? ` · the newest ${number(LIST_LIMIT)} runs` : "";
        $("list-updated").textContent = `Updated ${clock(Date.now() / 1000)}${newest}`;
      } catch (failure) {
        if (stopped) return;
        alertText(explain(failure));
        if (!failure.transient) runs = [];
      } finally {
        inflight = false;
      }
      render();
      if (again) { again = false; poll(); } else timer = setTimeout(poll, POLL_MS);
    }

    $("status-filter").onchange = poll;
    $("id-filter").oninput = render;
    poll();
    return { stop() { stopped = true; clearTimeout(timer); } };
  }

  // ---- a run's page --------------------------------------------------------------------

  function runView(runId, params) {
    $("list-view").hidden = true;
    $("run-view").hidden = false;
    document.title = `${runId} · eventlog`;
    $("run-title").textContent = runId;
    $("run-status").replaceChildren();
    $("run-facts").replaceChildren();
    $("run-metadata").hidden = true;
    $("events").replaceChildren();
    $("events-trimmed").hidden = true;
    $("events-empty").hidden = true;
    $("last-id").textContent = "–";
    $("shown-count").textContent = "";
    const nameFilter = $("name-filter");
    nameFilter.replaceChildren(element("option", "", "all events"));
    nameFilter.firstChild.value = "";

    const start = Math.max(0, parseInt(params.get("after") || "0", 10) || 0);
    const s = {
      es: null, lastId: start, streamId: "", shown: new Set(), names: new Set(), listening: new Set(),
      ended: false, stopped: false, watchTimer: null, reopenTimer: null, ahead: 0, short: 0,
      rows: 0, dropped: 0, painting: false, conn: "",
    };

    function setConn(state) {
      s.conn = state;
      const pill = $("conn-state");
      pill.textContent = state;
      pill.className = `pill ${state}`;
    }

    function showCounts() {
      $("last-id").textContent = s.lastId ? String(s.lastId) : "–";
      const visible = nameFilter.value ? $("events").querySelectorAll("li.event:not([hidden])").length : s.rows;
      $("shown-count").textContent = nameFilter.value
        ? `${number(visible)} of ${number(s.rows)} events shown`
        : `${number(s.rows)} events`;
      $("events-empty").hidden = s.rows > 0 || s.ended;
      const trimmed = $("events-trimmed");
      trimmed.hidden = s.dropped === 0;
      trimmed.textContent = `${number(s.dropped)} older events are not shown (the page keeps the newest ${number(MAX_ROWS)}).`;
    }

    function renderInfo(info) {
      $("run-status").replaceChildren(badge(info));
      const facts = [
        ["Events", number(info.event_count)], ["First id", number(info.first_id)],
        ["Last id", number(info.last_id)], ["Size", size(info.total_bytes)], ["Created", stamp(info.created_at)],
      ];
      if (info.metadata.thread_id !== undefined) facts.push(["Thread", String(info.metadata.thread_id)]);
      if (info.ended_at !== null) facts.push(["Ended", `${stamp(info.ended_at)} (${info.end_reason ?? "no reason"})`]);
      $("run-facts").replaceChildren(...facts.map(([term, value]) => {
        const item = element("div");
        item.append(element("dt", "", term), element("dd", "", value));
        return item;
      }));
      const hasMetadata = Object.keys(info.metadata).length > 0;
      $("run-metadata").hidden = !hasMetadata;
      $("run-metadata").querySelector("pre").textContent = JSON.stringify(info.metadata, null, 2);
    }

    function applyFilter(row) {
      row.hidden = Boolean(nameFilter.value) && row.dataset.name !== nameFilter.value;
    }

    nameFilter.onchange = () => {
      $("events").querySelectorAll("li.event").forEach(applyFilter);
      showCounts();
    };

    function onStreamEvent(event) {
      s.streamId = event.lastEventId;
      const id = Number(event.lastEventId);
      if (!(id > s.lastId)) return; // already shown (a replay after a reconnect)
      addEvent(id, event.type, parse(event.data), null);
    }

    function listen(name) {
      if (STREAM_FRAMES.has(name) || s.listening.has(name)) return;
      s.listening.add(name);
      if (s.es) s.es.addEventListener(name, onStreamEvent);
    }

    function learn(name) {
      listen(name);
      if (s.names.has(name)) return;
      s.names.add(name);
      const option = element("option", "", name);
      option.value = name;
      const after = [...nameFilter.options].slice(1).find((o) => o.value > name);
      nameFilter.insertBefore(option, after || null);
    }

    /** Show an event once, in id order (a JSON read may fill in one the stream missed). */
    function addEvent(id, name, data, createdAt) {
      if (s.shown.has(id)) return;
      s.shown.add(id);
      learn(name);
      const row = element("li", "event");
      row.dataset.id = String(id);
      row.dataset.name = name;
      // The stream's frames carry no timestamp: an event that came by the stream shows when it
      // arrived, one read as JSON when it was stored.
      const time = createdAt === null
        ? element("span", "time", `received ${clock(Date.now() / 1000)}`)
        : element("span", "time", `stored ${clock(createdAt)}`);
      row.append(
        element("span", "eid", `#${id}`), element("span", "name", name),
        element("pre", "", JSON.stringify(data, null, 2)), time,
      );
      applyFilter(row);
      repaint();
      const list = $("events");
      const next = id > s.lastId ? null
        : [...list.children].find((li) => Number(li.dataset.id || li.dataset.endId || Infinity) > id);
      list.insertBefore(row, next || null);
      s.lastId = Math.max(s.lastId, id);
      $("last-id").textContent = String(s.lastId);
      s.rows += 1;
      if (s.rows > MAX_ROWS) { list.querySelector("li.event").remove(); s.rows -= 1; s.dropped += 1; }
    }

    /** Counts and scrolling once per frame, not once per event (a page of history is a
     * thousand). Like tail -f, a reader at the bottom of the page stays there. */
    function repaint() {
      if (s.painting) return;
      const root = document.documentElement;
      const following = window.innerHeight + window.scrollY >= root.scrollHeight - 48;
      s.painting = true;
      requestAnimationFrame(() => {
        s.painting = false;
        showCounts();
        if (following) window.scrollTo(0, root.scrollHeight);
      });
    }

    function notice(kind, title, data) {
      const row = element("li", `notice ${kind}`);
      row.append(element("span", "name", title), element("span", "time", clock(Date.now() / 1000)));
      if (data !== undefined) row.append(element("pre", "", JSON.stringify(data, null, 2)));
      $("events").append(row);
      return row;
    }

    function closeStream() {
      if (s.es) s.es.close();
      s.es = null;
      clearTimeout(s.reopenTimer);
    }

    function end(id, data) {
      if (s.ended) return;
      s.ended = true;
      closeStream();
      s.lastId = Math.max(s.lastId, id);
      const reason = data && typeof data === "object" ? data.reason : data;
      notice("end", `#${id}  Run ended (reason: ${reason ?? "none"})`).dataset.endId = String(id);
      setConn("ended");
      showCounts();
      summarize(); // its final state
    }

    /** The stream's ``error`` frame (storage failed) carries no id; an event named ``error``
     * carries a new one. */
    function onErrorFrame(event) {
      if (event.lastEventId !== s.streamId && Number(event.lastEventId) > s.lastId) {
        onStreamEvent(event);
        return;
      }
      const data = parse(event.data);
      notice("error", "Stream error: the server stopped this stream", data);
      closeStream();
      setConn("error");
      alertText(`The stream failed: ${data && data.message ? data.message : event.data}`);
    }

    function openStream() {
      if (s.stopped || s.ended) return;
      const query = new URLSearchParams();
      if (token()) query.set("access_token", token());
      if (s.lastId > 0) query.set("last_event_id", String(s.lastId));
      const es = new EventSource(`${ROOT}${runPath(runId)}/stream${query.toString() ? `?${query}` : ""}`);
      s.es = es;
      s.streamId = "";
      es.onopen = () => { setConn("connected"); alertText(""); summarize(); };
      es.addEventListener("error", (event) => {
        if (event instanceof MessageEvent) { onErrorFrame(event); return; }
        if (s.es !== es) return;
        if (es.readyState === EventSource.CONNECTING) {
          setConn("reconnecting"); // the browser retries by itself, sending Last-Event-ID
        } else {
          closeStream(); // an HTTP error answer: the browser gave up; find out why
          diagnose();
        }
      });
      es.addEventListener("end", (event) => { s.streamId = event.lastEventId; end(Number(event.lastEventId), parse(event.data)); });
      es.addEventListener("gap", (event) => {
        const gap = parse(event.data);
        notice("gap", `Gap: the run's events after #${gap.requested_event_id} and before #${gap.earliest_available_event_id} were removed by retention; continuing from #${gap.earliest_available_event_id}`, gap);
        summarize();
      });
      for (const name of s.listening) es.addEventListener(name, onStreamEvent);
    }

    /** Why the stream was refused: 401/403/404 stop here; a server down or busy is retried. */
    async function diagnose() {
      setConn("reconnecting");
      try {
        renderInfo(await api(runPath(runId)));
      } catch (failure) {
        if (s.stopped) return;
        alertText(explain(failure));
        if (!failure.transient) { setConn("error"); return; }
      }
      s.reopenTimer = setTimeout(openStream, POLL_MS);
    }

    /** Read events after ``after`` as JSON pages: history, or what the stream did not deliver.
     * The pages are read first and shown at once: of a long history read onto an empty page,
     * only the newest ``MAX_ROWS`` are rendered (the others count as not shown). */
    async function readFrom(after) {
      const events = [];
      for (;;) {
        const page = await api(`${runPath(runId)}/events?after=${after}&limit=${READ_PAGE}`);
        if (s.stopped) return;
        events.push(...page.events);
        if (page.events.length < READ_PAGE) break;
        after = page.next_after;
      }
      const skip = s.rows === 0 ? Math.max(0, events.length - MAX_ROWS) : 0;
      events.forEach((event, i) => {
        if (event.event === "end") end(event.id, event.data);
        else if (i >= skip) addEvent(event.id, event.event, event.data, event.created_at);
        else if (!s.shown.has(event.id)) {
          s.shown.add(event.id);
          learn(event.event);
          s.lastId = Math.max(s.lastId, event.id);
          s.dropped += 1;
        }
      });
    }

    /** How many shown events the summary's window holds (for the missed-events check). */
    function shownWithin(info) {
      let n = 0;
      for (const id of s.shown) if (id > info.trimmed_through && id <= info.last_id) n += 1;
      return n;
    }

    async function refresh() {
      const info = await api(runPath(runId));
      if (s.stopped) return;
      renderInfo(info);
      // Events the stream did not deliver: the newest id is ahead of the page, or (from the
      // start of the run) fewer are shown than the run holds. Twice in a row, so that events
      // still in flight on the stream are not read twice.
      s.ahead = info.last_id > s.lastId ? s.ahead + 1 : 0;
      s.short = start === 0 && info.last_id <= s.lastId && shownWithin(info) < info.event_count ? s.short + 1 : 0;
      if (s.ahead >= 2) { s.ahead = 0; await readFrom(s.lastId); }
      if (s.short >= 2) { s.short = 0; await readFrom(Math.max(start, info.trimmed_through)); }
    }

    /** The summary now, as the stream opens, skips or ends, rather than at the next tick. */
    function summarize() {
      api(runPath(runId)).then((info) => { if (!s.stopped) renderInfo(info); }, () => { /* the watchdog reports */ });
    }

    async function watch() {
      try {
        await refresh();
      } catch (failure) {
        if (!failure.transient && !s.stopped) alertText(explain(failure));
      }
      // Ended, or stopped by an error (refused, or the server's error frame): nothing to watch.
      if (!s.stopped && !s.ended && s.conn !== "error") s.watchTimer = setTimeout(watch, POLL_MS);
    }

    async function begin() {
      setConn("connecting");
      try {
        renderInfo(await api(runPath(runId)));
        COMMON_NAMES.forEach(listen);
        await readFrom(start);
      } catch (failure) {
        if (s.stopped) return;
        alertText(explain(failure));
        if (failure.transient) { setConn("reconnecting"); s.reopenTimer = setTimeout(begin, POLL_MS); }
        else setConn("error");
        return;
      }
      showCounts();
      openStream();
      s.watchTimer = setTimeout(watch, POLL_MS);
    }

    begin();
    return {
      stop() {
        s.stopped = true;
        closeStream();
        clearTimeout(s.watchTimer);
      },
    };
  }

  // ---- routing -------------------------------------------------------------------------

  let current = null;

  function route() {
    if (current) current.stop();
    alertText("");
    const match = location.hash.match(/^#\/runs\/([^?]+)(?:\?(.*))?$/);
    let runId = null;
    try {
      runId = match && decodeURIComponent(match[1]);
    } catch { /* a malformed address: the list */ }
    current = runId ? runView(runId, new URLSearchParams(match[2] || "")) : listView();
  }

  window.addEventListener("hashchange", route);
  showTokenState();
  route();
})();
