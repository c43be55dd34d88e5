// The darktower join page: join a meeting through the GC, then follow its roster live over
// the MC's signaling WebSocket (protocol v1, see darktower.signaling.protocol).
//
// Contract with the page (join.html) and the tests:
// * `#status[data-state]` is one of idle, joining, joined, reconnecting, moving, left,
//   error; its text says what happens in words (`moving`: the MC drains and redirected the
//   page to the meeting's new MC, which it joins at once with the redirect's tokens);
// * every participant is a `#roster li[data-participant-id]` with `data-muted`,
//   `data-connected`, `data-host` and `data-self` ("true"/"false"), its name in `.name`;
// * `/join?meeting=ID&name=NAME` fills the form in; with `&autojoin=1` the page also joins
//   at once, exactly as a click on Join would (same checks: a bad meeting id or an empty name
//   is an error on the page and nothing is sent); without it the page waits for the click.
//
// * `/join?meeting=ID#token=ACCESS_TOKEN`: the page joins with that access token (sent as
//   `Authorization: Bearer`; the fragment never reaches a server and is removed from the
//   address bar at once). Without one the page joins as a guest, which a GC allows only with
//   GC_ALLOW_GUESTS=true (`darktower dev` does); otherwise the GC's 401 is shown.
//
// A dropped socket is reconnected with a fresh join answer for the same user id plus the
// session's correlation id and binding token (same participant); when the MC refuses those,
// or the meeting moved to another MC, the page joins afresh. Every string from the GC or the
// MC reaches the page through `textContent`, never as markup.
"use strict";

(function () {
  const PROTOCOL_VERSION = 1;
  const MAX_RECONNECTS = 6;
  const RECONNECT_BASE_MS = 500;
  const RECONNECT_CAP_MS = 5000;
  const LEAVE_CLOSE_MS = 2000;
  const FETCH_TIMEOUT_MS = 15000;
  const MEETING_ID = /^[A-Za-z0-9_-]{1,255}$/;
  // A resumed session the MC does not accept: join afresh as a new participant.
  const RESUME_REFUSED = new Set(["invalid_binding", "session_expired", "unknown_participant"]);

  const state = {
    meetingId: "",
    displayName: "",
    userId: null,
    accessToken: null,
    socket: null,
    participantId: null,
    correlationId: null,
    bindingToken: null,
    hostId: null,
    roster: new Map(),
    rows: new Map(),
    muted: false,
    active: false, // between Join and Leave (or a fatal error)
    reconnects: 0,
    generation: 0, // bumps with every socket, so events of an old socket are ignored
    // The MC the GC named whose socket never opened: sent with the next join as evidence
    // (`unreachable_mc_id`); the GC checks that MC itself and re-places the meeting if down.
    unreachableMcId: null,
  };

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setStatus(kind, text) {
    const status = $("status");
    status.dataset.state = kind;
    status.textContent = text;
  }

  function setControls() {
    $("join").disabled = state.active;
    $("meeting").disabled = state.active;
    $("name").disabled = state.active;
    $("leave").disabled = !state.active;
    $("mute").disabled = !state.active || state.participantId === null;
    const mute = $("mute");
    mute.setAttribute("aria-pressed", state.muted ? "true" : "false");
    mute.textContent = state.muted ? "Unmute" : "Mute";
  }

  // --- roster -------------------------------------------------------------------------

  function flag(value) {
    return value ? "true" : "false";
  }

  function renderParticipant(p) {
    const id = String(p.participant_id);
    let row = state.rows.get(id);
    if (!row) {
      row = el("li");
      row.dataset.participantId = id;
      row.append(el("span", "name"), el("span", "tags"));
      state.rows.set(id, row);
      $("roster").append(row);
    }
    const self = id === state.participantId;
    row.dataset.muted = flag(p.muted || p.host_muted);
    row.dataset.connected = flag(p.connected !== false);
    row.dataset.host = flag(id === state.hostId);
    row.dataset.self = flag(self);
    row.querySelector(".name").textContent = String(p.display_name || p.user_id || id);
    const tags = [];
    if (self) tags.push("you");
    if (id === state.hostId) tags.push("host");
    if (p.host_muted) tags.push("muted by host");
    else if (p.muted) tags.push("muted");
    if (p.connected === false) tags.push("reconnecting");
    row.querySelector(".tags").textContent = tags.join(" · ");
  }

  function renderCount() {
    const n = state.roster.size;
    $("roster-count").textContent = "(" + n + (n === 1 ? " participant)" : " participants)");
  }

  function upsert(p) {
    if (!p || typeof p.participant_id !== "string") return;
    state.roster.set(p.participant_id, p);
    renderParticipant(p);
    renderCount();
  }

  function remove(id) {
    state.roster.delete(id);
    const row = state.rows.get(id);
    if (row) row.remove();
    state.rows.delete(id);
    renderCount();
  }

  function rerenderAll() {
    for (const p of state.roster.values()) renderParticipant(p);
  }

  function resetRoster(list) {
    state.roster.clear();
    state.rows.clear();
    $("roster").replaceChildren();
    for (const p of Array.isArray(list) ? list : []) upsert(p);
    renderCount();
  }

  // --- the GC -------------------------------------------------------------------------

  async function askGc() {
    const body = { display_name: state.displayName };
    if (state.userId) body.user_id = state.userId;
    if (state.unreachableMcId) body.unreachable_mc_id = state.unreachableMcId;
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (state.accessToken) headers.Authorization = "Bearer " + state.accessToken;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    let response;
    try {
      response = await fetch("v1/meetings/" + encodeURIComponent(state.meetingId) + "/join", {
        method: "POST",
        headers: headers,
        body: JSON.stringify(body),
        cache: "no-store",
        signal: controller.signal,
      });
    } finally {
      clearTimeout(timer);
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (e) {
      answer = null;
    }
    if (!response.ok) {
      const why = answer && answer.message ? String(answer.message) : "HTTP " + response.status;
      const error = new Error(why);
      error.fatal = response.status >= 400 && response.status < 500;
      throw error;
    }
    if (!answer || typeof answer.join_token !== "string") throw new Error("bad join answer");
    if (!answer.signaling_url) {
      const error = new Error("the meeting's MC offers no client signaling");
      error.fatal = true;
      throw error;
    }
    state.userId = String(answer.user_id);
    // STUN/TURN for the media's RTCPeerConnections (GC_ICE_SERVERS; TURN credentials minted
    // for this join).
    if (window.DarktowerMedia) window.DarktowerMedia.setIceServers(answer.ice_servers || []);
    return answer;
  }

  // --- the MC -------------------------------------------------------------------------

  function send(message) {
    const socket = state.socket;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(Object.assign({ v: PROTOCOL_VERSION }, message)));
    }
  }

  function dropSession() {
    state.participantId = null;
    state.correlationId = null;
    state.bindingToken = null;
  }

  // Keepalive: a ping every 10 s while joined; each pong renews the binding token.
  setInterval(() => {
    if (state.socket && state.participantId) send({ type: "ping" });
  }, 10000);

  function openSocket(answer) {
    const generation = ++state.generation;
    const socket = new WebSocket(answer.signaling_url);
    state.socket = socket;
    let opened = false;
    socket.addEventListener("open", () => {
      if (generation !== state.generation) return;
      opened = true;
      state.unreachableMcId = null;
      // roster_delta: the MC batches roster changes into one frame per short window.
      const join = {
        type: "join",
        token: answer.join_token,
        meeting_id: state.meetingId,
        features: ["roster_delta"],
      };
      if (state.correlationId && state.bindingToken) {
        join.correlation_id = state.correlationId;
        join.binding_token = state.bindingToken;
      }
      send(join);
    });
    socket.addEventListener("message", (event) => {
      if (generation !== state.generation) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (message && typeof message === "object") onMessage(message);
    });
    socket.addEventListener("close", () => {
      if (generation !== state.generation) return;
      state.socket = null;
      if (!state.active) return;
      if (!opened && state.unreachableMcId !== answer.mc_id) {
        // The MC never took the connection: ask the GC again at once, naming it.
        state.unreachableMcId = String(answer.mc_id);
        reconnect("cannot reach " + answer.mc_id, true);
      } else {
        reconnect("the connection dropped");
      }
    });
  }

  function onMessage(m) {
    switch (m.type) {
      case "join_answer":
        state.participantId = String(m.participant_id);
        state.correlationId = String(m.correlation_id);
        state.bindingToken = String(m.binding_token);
        state.hostId = m.host_id ? String(m.host_id) : null;
        state.reconnects = 0;
        resetRoster(m.roster);
        $("meeting-name").textContent = state.meetingId;
        $("meeting-panel").hidden = false;
        setStatus(
          "joined",
          (m.reconnected ? "Back in " : "In ") + state.meetingId + " as " + state.displayName + ".",
        );
        setControls();
        if (state.muted) send({ type: "self_mute", muted: true });
        startMedia(m.media);
        break;
      case "participant_joined":
      case "participant_updated":
        // A host-role joiner that took the host over says so on its participant_joined.
        if (m.host_id) state.hostId = String(m.host_id);
        upsert(m.participant);
        if (m.host_id) rerenderAll();
        break;
      case "participant_left":
        onLeft(m);
        break;
      case "roster_delta":
        onDelta(m);
        break;
      case "muted":
        onHostMute(m);
        break;
      case "error":
        onError(m);
        break;
      case "redirect":
        follow(m);
        break;
      case "pong":
        // Each pong carries a fresh binding token (they live 30 s): keep the latest, so a
        // dropped connection can always resume as the same participant.
        if (m.binding_token) state.bindingToken = String(m.binding_token);
        break;
      case "media_update":
        // A media handler of the meeting went down (or it got others): media moves now.
        if (window.DarktowerMedia) window.DarktowerMedia.update(m.media || [], state.participantId);
        break;
      default:
        break; // types of later protocol versions
    }
  }

  // The MC drains and moved the meeting live to another MC: resume there with the redirect's
  // join token and binding token (same participant), without asking the GC. If that socket
  // never opens, the usual reconnection through the GC takes over.
  function follow(m) {
    state.correlationId = String(m.correlation_id);
    state.bindingToken = String(m.binding_token);
    setStatus("moving", "Moving " + state.meetingId + " to another server…");
    closeSocket(); // the old socket's close is ignored from now on
    openSocket({
      signaling_url: String(m.signaling_url),
      join_token: String(m.token),
      mc_id: String(m.mc_id || ""),
    });
  }

  function onLeft(m) {
    const id = String(m.participant_id);
    if (m.host_id !== undefined) state.hostId = m.host_id ? String(m.host_id) : null;
    if (id !== state.participantId) {
      remove(id);
      rerenderAll();
      return;
    }
    if (m.reason === "moved") {
      // The meeting moved to another MC: ask the GC where it is now, keep our session.
      reconnect("the meeting moved", true);
      return;
    }
    finish("left", "You left " + state.meetingId + " (" + String(m.reason) + ").");
  }

  // A window's roster changes in one frame (also the rest of a paged join_answer roster):
  // each participant in its latest state, then the departures, then the host after them.
  function onDelta(m) {
    state.hostId = m.host_id ? String(m.host_id) : null;
    for (const p of Array.isArray(m.participants) ? m.participants : []) upsert(p);
    for (const gone of Array.isArray(m.left) ? m.left : []) {
      const id = String(gone && gone.participant_id);
      if (id !== state.participantId) remove(id);
    }
    rerenderAll();
  }

  function onHostMute(m) {
    const id = String(m.participant_id);
    const p = state.roster.get(id);
    if (p) upsert(Object.assign({}, p, { host_muted: Boolean(m.muted) }));
    if (id === state.participantId && m.muted) {
      state.muted = true;
      muteMedia();
      setControls();
    }
  }

  function onError(m) {
    const code = String(m.code || "error");
    if (RESUME_REFUSED.has(code) && state.correlationId) {
      // Our session is gone on the MC: join again as a new participant.
      dropSession();
      reconnect("the previous session expired", true);
      return;
    }
    if (code === "meeting_unavailable") {
      reconnect("the MC cannot host the meeting now");
      return;
    }
    finish("error", "The MC refused: " + String(m.message || code) + " (" + code + ").");
  }

  function closeSocket() {
    state.generation += 1;
    const socket = state.socket;
    state.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "bye");
  }

  function finish(kind, text) {
    state.active = false;
    stopMedia();
    closeSocket();
    dropSession();
    setStatus(kind, text);
    setControls();
  }

  let reconnectTimer = null;

  function reconnect(why, immediately) {
    if (!state.active || reconnectTimer !== null) return;
    closeSocket();
    if (state.reconnects >= MAX_RECONNECTS) {
      finish("error", "Could not get back into " + state.meetingId + " (" + why + ").");
      return;
    }
    const delay = immediately
      ? 0
      : Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** state.reconnects);
    state.reconnects += 1;
    setStatus("reconnecting", "Reconnecting to " + state.meetingId + ": " + why + "…");
    reconnectTimer = setTimeout(async () => {
      reconnectTimer = null;
      if (!state.active) return;
      try {
        openSocket(await askGc());
      } catch (error) {
        if (error && error.fatal) finish("error", "Cannot join: " + error.message);
        else reconnect(error && error.message ? error.message : String(error));
      }
    }, delay);
  }

  // --- the controls -------------------------------------------------------------------

  async function onJoin(event) {
    event.preventDefault();
    if (state.active) return;
    const meetingId = $("meeting").value.trim();
    const name = $("name").value.trim();
    if (!MEETING_ID.test(meetingId)) {
      setStatus("error", "A meeting id is 1-255 letters, digits, '-' or '_'.");
      return;
    }
    if (name === "" || name.length > 100) {
      setStatus("error", "Please enter your name (at most 100 characters).");
      return;
    }
    state.meetingId = meetingId;
    state.displayName = name;
    state.active = true;
    state.reconnects = 0;
    state.unreachableMcId = null;
    state.muted = false;
    state.hostId = null;
    dropSession();
    resetRoster([]);
    setControls();
    setStatus("joining", "Joining " + meetingId + "…");
    try {
      openSocket(await askGc());
    } catch (error) {
      finish("error", "Cannot join: " + (error && error.message ? error.message : error));
    }
  }

  function onLeave() {
    if (!state.active) return;
    state.active = false;
    if (reconnectTimer !== null) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
    }
    send({ type: "leave" });
    stopMedia();
    const socket = state.socket;
    // The MC closes after a leave; close ourselves if it does not.
    setTimeout(() => {
      if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "left");
    }, LEAVE_CLOSE_MS);
    state.generation += 1;
    state.socket = null;
    dropSession();
    resetRoster([]);
    $("meeting-panel").hidden = true;
    setStatus("left", "You left " + state.meetingId + ".");
    setControls();
  }

  // --- media (media.js): camera and microphone through the meeting's media handler ------

  function startMedia(grants) {
    if (window.DarktowerMedia) window.DarktowerMedia.start(grants || [], state.participantId);
  }

  function muteMedia() {
    if (window.DarktowerMedia) window.DarktowerMedia.setMuted(state.muted);
  }

  function stopMedia() {
    if (window.DarktowerMedia) window.DarktowerMedia.stop();
  }

  function onMute() {
    if (!state.active) return;
    state.muted = !state.muted;
    muteMedia();
    send({ type: "self_mute", muted: state.muted });
    setControls();
  }

  // Fills the form from the query; answers whether it asks to join at once (`autojoin=1`).
  function prefill() {
    const params = new URLSearchParams(window.location.search);
    const meeting = params.get("meeting");
    const name = params.get("name");
    // Not cut to the fields' lengths: a cut id would name another meeting; the checks of
    // Join refuse one that is too long instead.
    if (meeting) $("meeting").value = meeting;
    if (name) $("name").value = name;
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    if (fragment.get("token")) {
      state.accessToken = fragment.get("token");
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return params.get("autojoin") === "1";
  }

  document.addEventListener("DOMContentLoaded", () => {
    const autojoin = prefill();
    $("join-form").addEventListener("submit", onJoin);
    $("leave").addEventListener("click", onLeave);
    $("mute").addEventListener("click", onMute);
    window.addEventListener("pagehide", onLeave);
    setControls();
    if (autojoin) $("join-form").requestSubmit($("join"));
  });
})();
