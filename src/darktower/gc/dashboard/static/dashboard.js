// The darktower fleet dashboard: polls the GC's read API and renders it.
//
// Contract with the page (index.html) and the tests:
// * every MC is a `tr[data-mc-id]` in `#mc-rows` with `data-health`, `data-meetings` and
//   `data-participants`; rows are sorted worst health first (unhealthy, degraded, draining,
//   pending, healthy), then by id; rows are kept and updated in place, not rebuilt;
// * every MH is a `tr[data-mh-id]` in `#mh-rows` with `data-health`;
// * placements are `#placements li[data-meeting-id]` with `data-outcome`, newest first; a
//   meeting placed anew after leaving its MC is one `li[data-outcome="moved"]` with
//   `data-mc-id` (the new MC), `data-previous-mc-id` and `data-move-reason`, its `.line`
//   reading "standup moved from mc-1 to mc-3 (mc-1 unhealthy)" (the GC's "moved" event folded
//   into the "accepted" that names it as previous); a move not placed yet reads
//   "standup left mc-1 (mc-1 unhealthy)";
// * meetings are `#meeting-rows tr[data-meeting-id]` with `data-mc-id` and
//   `data-participants`, the top MAX_MEETINGS by participants (the GC sorts them);
//   `#meetings-more` counts the rest;
// * `#summary` reads "N MCs: x healthy, y degraded, z unhealthy, w draining; live MCs (healthy
//   + degraded): meetings a/b, participants c/d" — the totals count only the MCs that can take
//   meetings: an unhealthy MC's last counts and a draining MC's capacity are not capacity;
// * an unhealthy MC's or MH's whole row is marked (`tr[data-health="unhealthy"]`, CSS);
// * `#last-refresh` carries the time of the last good refresh, `#error-banner` is shown while
//   the GC does not answer, and `body[data-refreshes]` counts good refreshes.
//
// * `/#token=ACCESS_TOKEN`: the reads send that token (`Authorization: Bearer`; it needs the
//   admin grant, `darktower access-token --admin`) unless the GC allows guests; the fragment
//   never reaches a server and is removed from the address bar at once.
// * `#webhooks` is this GC's webhook delivery (`v1/webhooks`): `data-state` is `off`, `ok`,
//   `backlog` (events waiting), `failing` (the last attempt failed and events wait) or
//   `unknown` (a GC without the endpoint), with `data-delivered` and `data-queue-depth`.
//
// Every string from the API reaches the page through `textContent`, never as markup.
"use strict";

(function () {
  const REFRESH_MS = 1500;
  const accessToken = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (accessToken) history.replaceState(null, "", window.location.pathname);
  const FETCH_TIMEOUT_MS = 4000;
  const MAX_PLACEMENTS = 100;
  const MAX_MEETINGS = 100;
  const ENDPOINTS = {
    controllers: "v1/controllers",
    handlers: "v1/media-handlers",
    meetings: "v1/meetings?limit=100",
    placements: "v1/placements/recent",
    webhooks: "v1/webhooks",
  };
  // Lower sorts first: what needs an operator's eyes is at the top.
  const HEALTH_ORDER = { unhealthy: 0, degraded: 1, draining: 2, pending: 3, healthy: 4 };
  const SUMMARY_HEALTHS = ["healthy", "degraded", "unhealthy", "draining"];
  // The MCs placement may choose: only their meetings and limits make the header's totals.
  const LIVE_HEALTHS = new Set(["healthy", "degraded"]);
  const GOOD_OUTCOMES = new Set(["accepted", "reused", "moved"]);

  const collator = new Intl.Collator("en", { numeric: true });
  const numbers = new Intl.NumberFormat("en-US");

  const state = {
    mcRows: new Map(),
    mhRows: new Map(),
    meetingRows: new Map(),
    placementsKey: "",
    lastOk: null,
    refreshes: 0,
  };

  // --- small helpers -------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function setData(node, key, value) {
    const text = String(value);
    if (node.dataset[key] !== text) node.dataset[key] = text;
  }

  function str(value, fallback) {
    return value === null || value === undefined || value === "" ? fallback : String(value);
  }

  function num(value) {
    const n = Number(value);
    return Number.isFinite(n) ? n : 0;
  }

  function plural(n, word) {
    return numbers.format(n) + " " + word + (n === 1 ? "" : "s");
  }

  function healthRank(health) {
    return Object.prototype.hasOwnProperty.call(HEALTH_ORDER, health) ? HEALTH_ORDER[health] : -1;
  }

  function byHealthThenId(a, b) {
    return healthRank(a.health) - healthRank(b.health) || collator.compare(a.id, b.id);
  }

  function ratio(current, max) {
    if (max > 0) return Math.min(1, Math.max(0, current / max));
    return current > 0 ? 1 : 0;
  }

  function level(r) {
    if (r >= 0.9) return "high";
    if (r >= 0.7) return "warn";
    return "ok";
  }

  // The API sends ISO 8601 with an offset; a bare timestamp is UTC.
  function parseTime(value) {
    if (typeof value !== "string" || value === "") return null;
    const iso = /(Z|[+-]\d\d:?\d\d)$/.test(value) ? value : value + "Z";
    const ms = Date.parse(iso);
    return Number.isNaN(ms) ? null : ms;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function clock(ms) {
    const d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function formatAge(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) {
      return "never";
    }
    const s = Math.max(0, Number(seconds));
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return Math.round(s / 3600) + " h";
  }

  function formatPercent(value) {
    return value === null || value === undefined ? "–" : Math.round(num(value)) + "%";
  }

  // --- building blocks ----------------------------------------------------------------

  function badge() {
    return el("span", "badge");
  }

  function updateBadge(node, health) {
    const h = str(health, "unknown");
    setData(node, "health", h);
    setText(node, h);
  }

  function bar() {
    const outer = el("div", "bar");
    const fill = el("div", "fill");
    const label = el("span", "bar-label");
    outer.append(fill, label);
    return { outer, fill, label };
  }

  function updateBar(b, current, max) {
    const r = ratio(current, max);
    const width = (r * 100).toFixed(1) + "%";
    if (b.fill.style.width !== width) b.fill.style.width = width;
    setData(b.outer, "level", level(r));
    setText(b.label, numbers.format(current) + " / " + numbers.format(max));
  }

  function cell(className) {
    return el("td", className);
  }

  // Puts `rows` into `body` in the order of `ids`, moving nodes only when the order changed.
  function order(body, rows, ids) {
    const current = body.children;
    let same = current.length === ids.length;
    for (let i = 0; same && i < ids.length; i++) {
      if (current[i] !== rows.get(ids[i]).row) same = false;
    }
    if (same) return;
    const fragment = document.createDocumentFragment();
    for (const id of ids) fragment.append(rows.get(id).row);
    body.replaceChildren(fragment);
  }

  function dropMissing(rows, seen) {
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.row.remove();
        rows.delete(id);
      }
    }
  }

  // --- meeting controllers ------------------------------------------------------------

  function mcRow(id) {
    const row = el("tr");
    row.dataset.mcId = id;
    const idCell = cell("id");
    idCell.textContent = id;
    const health = badge();
    const healthCell = cell();
    healthCell.append(health);
    const region = cell("region");
    const meetings = bar();
    const meetingsCell = cell("col-bar");
    meetingsCell.dataset.field = "meetings";
    meetingsCell.append(meetings.outer);
    const participants = bar();
    const participantsCell = cell("col-bar");
    participantsCell.dataset.field = "participants";
    participantsCell.append(participants.outer);
    const cpu = cell("num");
    const mem = cell("num");
    const age = cell("num age");
    age.dataset.field = "heartbeat";
    row.append(idCell, healthCell, region, meetingsCell, participantsCell, cpu, mem, age);
    return { row, idCell, health, region, meetings, participants, cpu, mem, age };
  }

  function renderControllers(controllers) {
    const body = $("mc-rows");
    const sorted = controllers.slice().sort(byHealthThenId);
    const seen = new Set();
    for (const mc of sorted) {
      const id = str(mc.id, "?");
      seen.add(id);
      let entry = state.mcRows.get(id);
      if (!entry) {
        entry = mcRow(id);
        state.mcRows.set(id, entry);
      }
      const health = str(mc.health, "unknown");
      const meetings = num(mc.current_meetings);
      const participants = num(mc.current_participants);
      setData(entry.row, "health", health);
      setData(entry.row, "meetings", meetings);
      setData(entry.row, "participants", participants);
      updateBadge(entry.health, health);
      setText(entry.region, str(mc.region, "–"));
      updateBar(entry.meetings, meetings, num(mc.max_meetings));
      updateBar(entry.participants, participants, num(mc.max_participants));
      setText(entry.cpu, formatPercent(mc.cpu_percent));
      setText(entry.mem, formatPercent(mc.memory_percent));
      setText(entry.age, formatAge(mc.heartbeat_age_s));
      const endpoint = str(mc.grpc_endpoint, "");
      if (entry.idCell.title !== endpoint) entry.idCell.title = endpoint;
    }
    dropMissing(state.mcRows, seen);
    order(body, state.mcRows, sorted.map((mc) => str(mc.id, "?")));
    $("mc-empty").hidden = controllers.length > 0;
    setText($("mc-count"), controllers.length ? "(" + controllers.length + ")" : "");
    renderSummary(controllers);
  }

  function renderSummary(controllers) {
    const counts = { healthy: 0, degraded: 0, unhealthy: 0, draining: 0, pending: 0 };
    let meetings = 0;
    let maxMeetings = 0;
    let participants = 0;
    let maxParticipants = 0;
    let live = 0;
    for (const mc of controllers) {
      if (Object.prototype.hasOwnProperty.call(counts, mc.health)) counts[mc.health] += 1;
      if (!LIVE_HEALTHS.has(mc.health)) continue;
      live += 1;
      meetings += num(mc.current_meetings);
      maxMeetings += num(mc.max_meetings);
      participants += num(mc.current_participants);
      maxParticipants += num(mc.max_participants);
    }
    let text =
      plural(controllers.length, "MC") +
      ": " +
      SUMMARY_HEALTHS.map((h) => numbers.format(counts[h]) + " " + h).join(", ");
    if (counts.pending) text += ", " + numbers.format(counts.pending) + " pending";
    text += "; live MCs (healthy + degraded): meetings ";
    text += numbers.format(meetings) + "/" + numbers.format(maxMeetings);
    text +=
      ", participants " + numbers.format(participants) + "/" + numbers.format(maxParticipants);
    const summary = $("summary");
    setText(summary, text);
    summary.title =
      "Meetings and participants against their limits on the " + plural(live, "live MC") +
      " only: unhealthy, draining and pending MCs take no meetings.";
    setData(summary, "total", controllers.length);
    for (const h of Object.keys(counts)) setData(summary, h, counts[h]);
    setData(summary, "live", live);
    setData(summary, "meetings", meetings);
    setData(summary, "maxMeetings", maxMeetings);
    setData(summary, "participants", participants);
    setData(summary, "maxParticipants", maxParticipants);
  }

  // --- media handlers -----------------------------------------------------------------

  function mhRow(id) {
    const row = el("tr");
    row.dataset.mhId = id;
    const idCell = cell("id");
    idCell.textContent = id;
    const health = badge();
    const healthCell = cell();
    healthCell.append(health);
    const zone = cell("zone");
    const streams = bar();
    const streamsCell = cell("col-bar");
    streamsCell.dataset.field = "streams";
    streamsCell.append(streams.outer);
    const age = cell("num age");
    row.append(idCell, healthCell, zone, streamsCell, age);
    return { row, idCell, health, zone, streams, age };
  }

  function renderHandlers(handlers, now) {
    const sorted = handlers
      .slice()
      .sort(
        (a, b) =>
          healthRank(a.health) - healthRank(b.health) ||
          collator.compare(str(a.zone, ""), str(b.zone, "")) ||
          collator.compare(a.id, b.id),
      );
    const seen = new Set();
    for (const mh of sorted) {
      const id = str(mh.id, "?");
      seen.add(id);
      let entry = state.mhRows.get(id);
      if (!entry) {
        entry = mhRow(id);
        state.mhRows.set(id, entry);
      }
      const health = str(mh.health, "unknown");
      setData(entry.row, "health", health);
      updateBadge(entry.health, health);
      const zone = str(mh.zone, "–");
      setText(entry.zone, mh.region ? zone + " · " + mh.region : zone);
      updateBar(entry.streams, num(mh.current_streams), num(mh.max_streams));
      const reported = parseTime(mh.last_report_at);
      setText(entry.age, reported === null ? "never" : formatAge((now - reported) / 1000));
      const endpoint = str(mh.webtransport_endpoint, "");
      if (entry.idCell.title !== endpoint) entry.idCell.title = endpoint;
    }
    dropMissing(state.mhRows, seen);
    order($("mh-rows"), state.mhRows, sorted.map((mh) => str(mh.id, "?")));
    $("mh-empty").hidden = handlers.length > 0;
    setText($("mh-count"), handlers.length ? "(" + handlers.length + ")" : "");
  }

  // --- meetings -----------------------------------------------------------------------

  function meetingRow(id) {
    const row = el("tr");
    row.dataset.meetingId = id;
    const idCell = cell("id");
    idCell.textContent = id;
    const mc = cell("mc");
    const participants = cell("num");
    participants.dataset.field = "participants";
    row.append(idCell, mc, participants);
    return { row, mc, participants };
  }

  function renderMeetings(answer) {
    $("meeting-section").hidden = answer === null;
    if (answer === null) return;
    const list = Array.isArray(answer.meetings) ? answer.meetings.slice(0, MAX_MEETINGS) : [];
    const total = Math.max(num(answer.total), list.length);
    const seen = new Set();
    const ids = [];
    for (const m of list) {
      const id = str(m.meeting_id, "?");
      if (seen.has(id)) continue;
      seen.add(id);
      ids.push(id);
      let entry = state.meetingRows.get(id);
      if (!entry) {
        entry = meetingRow(id);
        state.meetingRows.set(id, entry);
      }
      const mcId = str(m.mc_id, "–");
      const participants = num(m.participants);
      setData(entry.row, "mcId", mcId);
      setData(entry.row, "participants", participants);
      setText(entry.mc, mcId);
      setText(entry.participants, numbers.format(participants));
    }
    dropMissing(state.meetingRows, seen);
    order($("meeting-rows"), state.meetingRows, ids);
    const rest = total - ids.length;
    const more = $("meetings-more");
    more.hidden = rest <= 0;
    setData(more, "count", Math.max(0, rest));
    setText(more, rest > 0 ? "and " + plural(rest, "more meeting") + " with fewer participants" : "");
    $("meetings-empty").hidden = total > 0;
    setText($("meeting-count"), total ? "(" + numbers.format(total) + ")" : "");
  }

  // --- placements ---------------------------------------------------------------------

  // Newest first, each move as one entry: the GC logs "moved" (the meeting left `mc_id`) when
  // a join finds its MC unfit, then "accepted" with `previous_mc_id` once another MC took
  // it; the "moved" a later "accepted" names is folded into it (`move` on the entry).
  function foldMoves(newestFirst) {
    const folded = new Set();
    const entries = [];
    newestFirst.forEach((e, i) => {
      if (folded.has(i)) return;
      if (e.outcome === "accepted" && e.previous_mc_id) {
        const j = newestFirst.findIndex(
          (m, k) =>
            k > i &&
            !folded.has(k) &&
            m.outcome === "moved" &&
            m.meeting_id === e.meeting_id &&
            str(m.previous_mc_id, m.mc_id) === e.previous_mc_id,
        );
        if (j >= 0) folded.add(j);
        entries.push({ e, move: { from: String(e.previous_mc_id), to: e.mc_id } });
        return;
      }
      if (e.outcome === "moved") {
        entries.push({ e, move: { from: str(e.previous_mc_id, str(e.mc_id, "?")), to: null } });
        return;
      }
      entries.push({ e, move: null });
    });
    return entries;
  }

  function placementLine(e, move) {
    const line = el("span", "line");
    const meeting = el("span", "meeting", str(e.meeting_id, "?"));
    if (move === null) {
      line.append(meeting, el("span", "arrow", "→"), el("span", "mc", str(e.mc_id, "no MC")));
      return line;
    }
    const from = el("span", "mc from", move.from);
    if (move.to === null) {
      line.append(meeting, " left ", from);
    } else {
      line.append(meeting, " moved from ", from, " to ", el("span", "mc", String(move.to)));
    }
    if (e.move_reason) {
      line.append(" ", el("span", "why", "(" + move.from + " " + String(e.move_reason) + ")"));
    }
    return line;
  }

  function renderPlacements(events) {
    const newestFirst = events
      .map((e, i) => ({ e, i, at: parseTime(e.at) }))
      .sort((a, b) => (b.at ?? 0) - (a.at ?? 0) || a.i - b.i)
      .map((x) => x.e);
    const entries = foldMoves(newestFirst).slice(0, MAX_PLACEMENTS);
    const key = JSON.stringify(entries);
    let refused = 0;
    for (const e of events) if (!GOOD_OUTCOMES.has(e.outcome)) refused += 1;
    setText(
      $("placement-count"),
      events.length ? "(" + events.length + ", " + refused + " refused)" : "",
    );
    $("placements-empty").hidden = events.length > 0;
    if (key === state.placementsKey) return;
    state.placementsKey = key;
    const items = entries.map(({ e, move }) => {
      const outcome = move ? "moved" : str(e.outcome, "unknown");
      const good = GOOD_OUTCOMES.has(outcome);
      const li = el("li", good ? "placed" : "refused");
      li.dataset.meetingId = str(e.meeting_id, "");
      li.dataset.outcome = outcome;
      if (e.mc_id) li.dataset.mcId = String(e.mc_id);
      if (move) {
        li.dataset.previousMcId = move.from;
        if (e.move_reason) li.dataset.moveReason = String(e.move_reason);
      }
      const at = parseTime(e.at);
      const time = el("time", "at", at === null ? "--:--:--" : clock(at));
      if (typeof e.at === "string") time.dateTime = e.at;
      const tag = el("span", "outcome", outcome);
      li.append(time, placementLine(e, move), tag);
      // A move's detail ("previous MC unhealthy") is already in its line.
      if (e.detail && !(move && e.move_reason)) li.append(el("span", "detail", String(e.detail)));
      return li;
    });
    $("placements").replaceChildren(...items);
  }

  // --- the refresh loop ---------------------------------------------------------------

  // `optional`: a 404 answers null (an API without that endpoint), not an error.
  async function fetchJson(path, signal, wantList = true, optional = false) {
    const headers = { Accept: "application/json" };
    if (accessToken) headers.Authorization = "Bearer " + accessToken;
    const response = await fetch(path, { signal, cache: "no-store", headers });
    if (optional && response.status === 404) return null;
    if (!response.ok) throw new Error(path + " answered HTTP " + response.status);
    const body = await response.json();
    if (wantList && !Array.isArray(body)) throw new Error(path + " did not answer a list");
    if (!wantList && (body === null || typeof body !== "object" || Array.isArray(body))) {
      throw new Error(path + " did not answer an object");
    }
    return body;
  }

  function describe(error, timedOut) {
    if (timedOut) return "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s";
    if (error instanceof TypeError) return "cannot reach the GC";
    return error && error.message ? error.message : String(error);
  }

  function showOk(now) {
    state.lastOk = now;
    state.refreshes += 1;
    const last = $("last-refresh");
    setText(last, "updated " + clock(now));
    last.dataset.at = String(now);
    setData($("refresh"), "state", "ok");
    document.body.dataset.refreshes = String(state.refreshes);
    delete document.body.dataset.stale;
    const banner = $("error-banner");
    banner.hidden = true;
    banner.textContent = "";
  }

  function showError(why, now) {
    setData($("refresh"), "state", "error");
    document.body.dataset.stale = "true";
    const banner = $("error-banner");
    const since = state.lastOk === null ? "no data yet" : "data as of " + clock(state.lastOk);
    banner.textContent =
      "The GC does not answer (" + why + ") at " + clock(now) + "; " + since +
      ". Retrying every " + REFRESH_MS / 1000 + " s.";
    banner.hidden = false;
  }

  function renderWebhooks(answer) {
    const node = $("webhooks");
    if (answer === null) {
      setData(node, "state", "unknown");
      setText(node, "not reported by this GC");
      return;
    }
    if (!answer.enabled) {
      setData(node, "state", "off");
      setText(node, "off (GC_WEBHOOK_URLS is empty)");
      return;
    }
    const depth = num(answer.queue_depth);
    const failedLast =
      answer.last_failure_at &&
      (!answer.last_delivered_at || String(answer.last_failure_at) > String(answer.last_delivered_at));
    const state = depth > 0 ? (failedLast ? "failing" : "backlog") : "ok";
    setData(node, "state", state);
    setData(node, "delivered", num(answer.delivered));
    setData(node, "queueDepth", depth);
    const parts = [
      plural(num(answer.urls), "URL") + ", partitions " + num(answer.partitions_held) + "/" +
        num(answer.partitions),
      "delivered " + numbers.format(num(answer.delivered)),
    ];
    const failed = num(answer.failed_attempts);
    if (failed > 0) {
      parts.push(
        plural(failed, "failed attempt") + " (last: " + str(answer.last_failure_reason, "?") + ")"
      );
    }
    parts.push(
      depth > 0
        ? "backlog " + numbers.format(depth) + ", oldest " +
            Math.round(num(answer.oldest_undelivered_age_seconds)) + " s"
        : "no backlog"
    );
    setText(node, parts.join(" · "));
  }

  async function refresh() {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, FETCH_TIMEOUT_MS);
    try {
      const [controllers, handlers, meetings, placements, webhooks] = await Promise.all([
        fetchJson(ENDPOINTS.controllers, controller.signal),
        fetchJson(ENDPOINTS.handlers, controller.signal),
        fetchJson(ENDPOINTS.meetings, controller.signal, false, true),
        fetchJson(ENDPOINTS.placements, controller.signal),
        fetchJson(ENDPOINTS.webhooks, controller.signal, false, true),
      ]);
      const now = Date.now();
      renderControllers(controllers);
      renderHandlers(handlers, now);
      renderMeetings(meetings);
      renderPlacements(placements);
      renderWebhooks(webhooks);
      showOk(now);
    } catch (error) {
      showError(describe(error, timedOut), Date.now());
    } finally {
      clearTimeout(timer);
      setTimeout(refresh, REFRESH_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", refresh);
})();
