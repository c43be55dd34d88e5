// Media for the join page: camera and microphone to the meeting's media handler (Janus
// VideoRoom over its WebSocket API, protocol "janus-protocol"), and a video tile per
// participant who publishes. A small client of our own: no library, nothing from a CDN.
//
// `DarktowerMedia.start(grants, participantId)` takes the `media` list of a join answer (the
// primary MH first, then its backups: `{mh_id, role, url, room, token}`) and connects to the
// first; when that MH fails (socket closed, session refused, ICE failed) it moves to the next
// grant and publishes there again. `update(grants, participantId)` takes a `media_update`'s
// grants: it moves to the first one at once (when already there, it only takes the new token,
// attaching one handle with it).
// `setIceServers(list)` takes a join answer's `ice_servers` (`{urls, username?, credential?}`,
// STUN/TURN from GC_ICE_SERVERS): every RTCPeerConnection made after it uses them (none: []).
// `setMuted(bool)` turns the outgoing audio track off/on;
// `stop()` hangs up. Contract with the tests:
// * `#videos .tile[data-participant-id]` per participant seen (the own one has
//   `data-self="true"`), each with one `video`;
// * `#videos[data-mh]` is the mh_id in use, `[data-state]` one of idle, connecting,
//   publishing, failed;
// * `window.darktowerMediaStats()` resolves to `{video_frames_decoded, audio_bytes_received,
//   feeds}` summed over the subscriptions (WebRTC getStats), `updates`: how many
//   `media_update` grants it took, and `ice_urls`: the ICE server URLs of the publisher's
//   RTCPeerConnection.
"use strict";

(function () {
  const KEEPALIVE_MS = 25000;
  const REQUEST_TIMEOUT_MS = 10000;
  const RETRY_MS = 500;
  const MAX_ROUNDS = 3;
  const SUBSCRIBE_RETRIES = 6;

  function wsUrl(url) {
    return url.replace(/^http:/, "ws:").replace(/^https:/, "wss:");
  }

  function randomId() {
    return Math.random().toString(36).slice(2, 12);
  }

  // One Janus session on one media handler.
  class JanusSession {
    constructor(grant, onEvent, onFail) {
      this.grant = grant;
      this.onEvent = onEvent;
      this.onFail = onFail;
      this.pending = new Map();
      this.sessionId = null;
      this.closed = false;
      this.timer = null;
    }

    open() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(wsUrl(this.grant.url), "janus-protocol");
        this.ws = ws;
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error("media handler unreachable"));
        ws.onclose = () => {
          for (const p of this.pending.values()) p.reject(new Error("closed"));
          this.pending.clear();
          if (!this.closed) this.onFail("socket closed");
        };
        ws.onmessage = (event) => this.dispatch(JSON.parse(event.data));
      });
    }

    dispatch(m) {
      const waiting = m.transaction ? this.pending.get(m.transaction) : undefined;
      if (waiting && !(m.janus === "ack" && waiting.wantEvent)) {
        this.pending.delete(m.transaction);
        if (m.janus === "error") waiting.reject(new Error(m.error ? m.error.reason : "error"));
        else waiting.resolve(m);
        return;
      }
      if (m.janus === "ack") return;
      if (m.janus === "timeout") this.onFail("session timed out");
      else this.onEvent(m);
    }

    request(body, wantEvent) {
      const transaction = randomId();
      const message = Object.assign({ transaction: transaction, token: this.grant.token }, body);
      if (this.sessionId !== null) message.session_id = this.sessionId;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(transaction);
          reject(new Error("no answer from the media handler"));
        }, REQUEST_TIMEOUT_MS);
        this.pending.set(transaction, {
          wantEvent: Boolean(wantEvent),
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        this.ws.send(JSON.stringify(message));
      });
    }

    async create() {
      const answer = await this.request({ janus: "create" });
      this.sessionId = answer.data.id;
      this.timer = setInterval(() => {
        if (this.ws.readyState === WebSocket.OPEN) {
          this.ws.send(
            JSON.stringify({
              janus: "keepalive",
              session_id: this.sessionId,
              transaction: randomId(),
              token: this.grant.token,
            }),
          );
        }
      }, KEEPALIVE_MS);
    }

    async attach() {
      const answer = await this.request({ janus: "attach", plugin: "janus.plugin.videoroom" });
      return answer.data.id;
    }

    // A plugin request on a handle; resolves to the plugin's event (data, jsep).
    async message(handleId, body, jsep) {
      const m = { janus: "message", handle_id: handleId, body: body };
      if (jsep) m.jsep = jsep;
      const answer = await this.request(m, true);
      const data = answer.plugindata ? answer.plugindata.data : {};
      if (data && data.error_code) throw new Error(data.error || "refused");
      return { data: data, jsep: answer.jsep };
    }

    trickle(handleId, candidate) {
      if (this.ws.readyState !== WebSocket.OPEN) return;
      this.ws.send(
        JSON.stringify({
          janus: "trickle",
          session_id: this.sessionId,
          handle_id: handleId,
          transaction: randomId(),
          token: this.grant.token,
          candidate: candidate || { completed: true },
        }),
      );
    }

    close() {
      this.closed = true;
      if (this.timer) clearInterval(this.timer);
      if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
        try {
          if (this.sessionId !== null && this.ws.readyState === WebSocket.OPEN) {
            this.ws.send(
              JSON.stringify({
                janus: "destroy",
                session_id: this.sessionId,
                transaction: randomId(),
                token: this.grant.token,
              }),
            );
          }
        } finally {
          this.ws.close(1000, "bye");
        }
      }
    }
  }

  const media = {
    grants: [],
    index: 0,
    attempts: 0, // failed connections since the last success
    participantId: null,
    session: null,
    stream: null,
    muted: false,
    publisher: null, // {handle, pc}
    feeds: new Map(), // feed id → {handle, pc, participantId}
    handles: new Map(), // handle id → feed id (subscribers) or "publisher"
    generation: 0,
    updates: 0, // media_update frames taken
    iceServers: [], // the join answer's `ice_servers`
  };

  function setIceServers(list) {
    media.iceServers = (Array.isArray(list) ? list : [])
      .filter((s) => s && Array.isArray(s.urls) && s.urls.length > 0)
      .map((s) => {
        const entry = { urls: s.urls.map(String) };
        if (typeof s.username === "string") entry.username = s.username;
        if (typeof s.credential === "string") entry.credential = s.credential;
        return entry;
      });
  }

  function box() {
    return document.getElementById("videos");
  }

  function setState(kind) {
    const v = box();
    if (!v) return;
    v.dataset.state = kind;
    v.dataset.mh = media.session ? media.session.grant.mh_id : "";
  }

  function tile(participantId, self) {
    const v = box();
    let t = v.querySelector('.tile[data-participant-id="' + CSS.escape(participantId) + '"]');
    if (!t) {
      t = document.createElement("div");
      t.className = "tile";
      t.dataset.participantId = participantId;
      t.dataset.self = self ? "true" : "false";
      const video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      if (self) video.muted = true;
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = self ? "you" : participantId;
      t.append(video, label);
      v.append(t);
    }
    return t;
  }

  function dropTile(participantId) {
    const v = box();
    const t = v && v.querySelector('.tile[data-participant-id="' + CSS.escape(participantId) + '"]');
    if (t) t.remove();
  }

  function newPeer(handleId) {
    const pc = new RTCPeerConnection({ iceServers: media.iceServers });
    pc.onicecandidate = (event) => {
      if (media.session) media.session.trickle(handleId, event.candidate);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" && media.publisher && media.publisher.pc === pc) {
        failover("media connection failed");
      }
    };
    return pc;
  }

  async function subscribe(generation, feed) {
    const id = feed.id;
    if (media.feeds.has(id) || generation !== media.generation) return;
    const participantId = String(feed.display || id);
    if (participantId === media.participantId) return;
    media.feeds.set(id, { participantId: participantId });
    const session = media.session;
    const handle = await session.attach();
    media.handles.set(handle, id);
    const pc = newPeer(handle);
    media.feeds.set(id, { handle: handle, pc: pc, participantId: participantId });
    const remote = new MediaStream();
    pc.ontrack = (event) => {
      remote.addTrack(event.track);
      const video = tile(participantId, false).querySelector("video");
      if (video.srcObject !== remote) video.srcObject = remote;
    };
    const joined = await session.message(handle, {
      request: "join",
      ptype: "subscriber",
      room: Number(session.grant.room),
      streams: [{ feed: id }],
      token: session.grant.token,
    });
    await pc.setRemoteDescription(joined.jsep);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await session.message(handle, { request: "start", room: Number(session.grant.room) }, answer);
  }

  // A subscription that failed is tried again a moment later, a few times: e.g. made with a
  // token the MC just replaced (a media move), before its `media_update` arrived.
  function trySubscribe(generation, feed, left) {
    subscribe(generation, feed).catch((e) => {
      console.warn("subscribe failed", e);
      unsubscribe(feed.id);
      if (left > 0 && generation === media.generation) {
        setTimeout(() => trySubscribe(generation, feed, left - 1), RETRY_MS);
      }
    });
  }

  function unsubscribe(id) {
    const feed = media.feeds.get(id);
    if (!feed) return;
    media.feeds.delete(id);
    if (feed.pc) feed.pc.close();
    if (feed.handle) media.handles.delete(feed.handle);
    dropTile(feed.participantId);
  }

  function onEvent(generation, m) {
    if (generation !== media.generation) return;
    const data = m.plugindata ? m.plugindata.data : null;
    if (!data) return;
    const subscribe1 = (p) => trySubscribe(generation, p, SUBSCRIBE_RETRIES);
    if (Array.isArray(data.publishers)) data.publishers.forEach(subscribe1);
    const gone = data.unpublished !== undefined ? data.unpublished : data.leaving;
    if (gone !== undefined && gone !== "ok") unsubscribe(gone);
  }

  async function connect(generation) {
    const grant = media.grants[media.index];
    setState("connecting");
    const session = new JanusSession(
      grant,
      (m) => onEvent(generation, m),
      (why) => {
        if (generation === media.generation) failover(why);
      },
    );
    media.session = session;
    await session.open();
    await session.create();
    const handle = await session.attach();
    media.handles.set(handle, "publisher");
    const joined = await session.message(handle, {
      request: "join",
      ptype: "publisher",
      room: Number(grant.room),
      display: media.participantId,
      token: grant.token,
    });
    if (generation !== media.generation) return;
    setState("connecting");
    const pc = newPeer(handle);
    media.publisher = { handle: handle, pc: pc };
    for (const track of media.stream.getTracks()) pc.addTrack(track, media.stream);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const published = await session.message(
      handle,
      { request: "publish", audio: true, video: true },
      offer,
    );
    await pc.setRemoteDescription(published.jsep);
    media.attempts = 0;
    setState("publishing");
    for (const p of joined.data.publishers || []) {
      trySubscribe(generation, p, SUBSCRIBE_RETRIES);
    }
  }

  function hangUp() {
    for (const id of Array.from(media.feeds.keys())) unsubscribe(id);
    if (media.publisher) media.publisher.pc.close();
    media.publisher = null;
    media.handles.clear();
    if (media.session) media.session.close();
    media.session = null;
  }

  // The next grant (the primary again after the last backup), a moment later; after
  // MAX_ROUNDS passes over every grant without success the page gives up on media.
  function failover(why) {
    media.generation += 1;
    const generation = media.generation;
    hangUp();
    media.attempts += 1;
    if (media.attempts >= MAX_ROUNDS * media.grants.length) {
      setState("failed");
      console.warn("media: no media handler answers (" + why + ")");
      return;
    }
    media.index = (media.index + 1) % media.grants.length;
    setState("connecting");
    console.warn("media: moving to " + media.grants[media.index].mh_id + " (" + why + ")");
    setTimeout(() => {
      if (generation !== media.generation) return;
      connect(generation).catch((e) => {
        if (generation === media.generation) failover(String(e && e.message ? e.message : e));
      });
    }, RETRY_MS);
  }

  async function start(grants, participantId) {
    stop();
    if (!Array.isArray(grants) || grants.length === 0) return;
    const v = box();
    if (v) v.hidden = false;
    media.grants = grants;
    media.index = 0;
    media.attempts = 0;
    media.participantId = participantId;
    media.generation += 1;
    const generation = media.generation;
    try {
      if (!media.stream) {
        media.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      }
      applyMute();
      tile(participantId, true).querySelector("video").srcObject = media.stream;
      await connect(generation);
    } catch (e) {
      if (generation === media.generation) failover(String(e && e.message ? e.message : e));
    }
  }

  // New grants from the MC (`media_update`: a media handler of the meeting went down, or the
  // meeting got other ones). Still on the first one's MH and room: only the token changes
  // (Janus checks it on each request, the old one is revoked). Otherwise: move there now.
  function update(grants, participantId) {
    if (!Array.isArray(grants) || grants.length === 0) return;
    media.updates += 1;
    const first = grants[0];
    const session = media.session;
    if (!media.stream || media.grants.length === 0) {
      start(grants, participantId);
      return;
    }
    media.grants = grants;
    media.index = 0;
    media.attempts = 0;
    const here = session && !session.closed ? session.grant : null;
    if (here && here.mh_id === first.mh_id && here.url === first.url && here.room === first.room) {
      session.grant = first;
      // A handle attached with the new token: the MH sees it used (it revokes unused ones).
      session.attach().catch((e) => console.warn("media: new token not taken", e));
      return;
    }
    media.generation += 1;
    const generation = media.generation;
    hangUp();
    setState("connecting");
    console.warn("media: moving to " + first.mh_id + " (told by the meeting)");
    connect(generation).catch((e) => {
      if (generation === media.generation) failover(String(e && e.message ? e.message : e));
    });
  }

  function applyMute() {
    if (!media.stream) return;
    for (const track of media.stream.getAudioTracks()) track.enabled = !media.muted;
  }

  function setMuted(muted) {
    media.muted = Boolean(muted);
    applyMute();
  }

  function stop() {
    media.generation += 1;
    hangUp();
    const v = box();
    if (v) {
      v.replaceChildren();
      v.hidden = true;
    }
    setState("idle");
  }

  function release() {
    stop();
    if (media.stream) for (const track of media.stream.getTracks()) track.stop();
    media.stream = null;
  }

  async function stats() {
    let frames = 0;
    let bytes = 0;
    for (const feed of media.feeds.values()) {
      if (!feed.pc) continue;
      const report = await feed.pc.getStats();
      report.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        if (s.kind === "video") frames += s.framesDecoded || 0;
        if (s.kind === "audio") bytes += s.bytesReceived || 0;
      });
    }
    return {
      video_frames_decoded: frames,
      audio_bytes_received: bytes,
      feeds: media.feeds.size,
      updates: media.updates,
      // The ICE server URLs the publisher's RTCPeerConnection was given (no credentials).
      ice_urls: media.publisher
        ? media.publisher.pc.getConfiguration().iceServers.flatMap((s) => s.urls)
        : [],
    };
  }

  window.DarktowerMedia = {
    start: start,
    update: update,
    stop: release,
    setMuted: setMuted,
    setIceServers: setIceServers,
  };
  window.darktowerMediaStats = stats;
})();
