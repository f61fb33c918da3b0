// The review page. Plain JS, no build step, nothing from the network but this app.
// Every piece of text from the spec or the store goes in with textContent: never markup.
"use strict";

(() => {
  const POLL_MS = 1000; // a take a running `orchestrator run` finishes shows up within a second
  const DRIFT_S = 0.05; // takes further apart than this are pulled back to the first one
  const token = document.querySelector('meta[name="review-token"]').content;
  const $ = (id) => document.getElementById(id);

  let state = null;
  let currentId = null;
  let takesKey = "";
  let playing = false;
  let syncTimer = null;

  class ServerSaid extends Error {}

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function statusClass(status) {
    return "status-" + String(status).replace(/[^a-z]+/g, "-").replace(/-+$/, "");
  }

  // --- messages ------------------------------------------------------------------------------------------------

  function showError(text) {
    const box = $("message");
    box.textContent = text;
    box.className = "error";
    box.hidden = false;
  }

  function showInfo(text) {
    const box = $("message");
    box.textContent = text;
    box.className = "info";
    box.hidden = false;
  }

  // --- talking to the server -----------------------------------------------------------------------------------

  async function fetchState() {
    const response = await fetch("/api/state", { credentials: "same-origin", cache: "no-store" });
    const data = await response.json();
    if (!data.ok) throw new ServerSaid(data.error || "the server could not read the review");
    return data;
  }

  async function decide(action, extra = {}) {
    const shot = currentShot();
    if (!shot) return;
    try {
      const response = await fetch("/api/decide", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Review-Token": token },
        body: JSON.stringify({ action, shot: shot.id, ...extra }),
      });
      const data = await response.json();
      if (!data.ok) {
        showError("not saved: " + (data.error || "the server refused the decision"));
        return;
      }
      showInfo(`saved: ${shot.id} ${action} (${data.decisions})`);
      apply(data);
    } catch (error) {
      showError("not saved: the review server cannot be reached (" + error.message + ")");
    }
  }

  async function poll() {
    try {
      apply(await fetchState());
      if ($("message").dataset.lost) {
        $("message").hidden = true;
        delete $("message").dataset.lost;
      }
    } catch (error) {
      const said = error instanceof ServerSaid;
      showError(said ? error.message : "lost contact with the review server: " + error.message);
      $("message").dataset.lost = "1";
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  // --- state and what is shown ---------------------------------------------------------------------------------

  function visibleShots() {
    if (!state) return [];
    const wanted = $("filter").value;
    return state.shots.filter((shot) => !wanted || shot.status === wanted);
  }

  function currentShot() {
    if (!state) return null;
    return state.shots.find((shot) => shot.id === currentId) || null;
  }

  function apply(data) {
    state = data;
    if (!currentShot() && state.shots.length) currentId = state.shots[0].id;
    $("project").textContent = "review: " + state.project;
    document.title = "review: " + state.project;
    renderFilter();
    renderStrip();
    renderShot();
  }

  function renderFilter() {
    const select = $("filter");
    const present = [...new Set(state.shots.map((shot) => shot.status))];
    const known = [...select.options].slice(1).map((option) => option.value);
    if (present.join("\n") === known.join("\n")) return;
    const chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const status of present) select.append(el("option", { value: status, text: status }));
    select.value = present.includes(chosen) ? chosen : "";
    const counts = present.map((status) => `${state.shots.filter((s) => s.status === status).length} ${status}`);
    $("counts").textContent = counts.join(" · ");
  }

  function renderStrip() {
    const strip = $("strip");
    strip.replaceChildren();
    for (const shot of visibleShots()) {
      const button = el("button", {
        type: "button",
        class: "strip-shot" + (shot.id === currentId ? " current" : ""),
        "data-shot": shot.id,
        "aria-current": shot.id === currentId ? "true" : null,
      });
      if (shot.boards.length) button.append(el("img", { src: shot.boards[0].url, alt: "" }));
      button.append(el("span", { class: "strip-id", text: shot.id }));
      button.append(el("span", { class: "badge " + statusClass(shot.status), text: shot.status }));
      button.addEventListener("click", () => goTo(shot.id));
      strip.append(button);
    }
  }

  function renderShot() {
    const shot = currentShot();
    if (!shot) return;
    $("shot-id").textContent = shot.id;
    const badge = $("shot-status");
    badge.textContent = shot.status;
    badge.className = "badge " + statusClass(shot.status);
    const decision = shot.decision;
    const who = decision.by ? ` (${decision.by}, ${decision.at})` : "";
    $("decision").textContent = decision.note ? `note: ${decision.note}${who}` : who.trim();
    const key = JSON.stringify([shot.id, shot.takes.map((t) => [t.number, t.status, t.url, t.stale])]);
    if (key !== takesKey) {
      takesKey = key;
      renderTakes(shot);
      renderDetails(shot);
    }
    for (const card of document.querySelectorAll(".take")) {
      const take = shot.takes.find((t) => String(t.number) === card.dataset.number);
      card.classList.toggle("selected", Boolean(take && take.selected));
    }
  }

  function takeCard(take) {
    const card = el("figure", { class: "take", "data-number": String(take.number) });
    if (take.url) {
      const video = el("video", { src: take.url, preload: "auto", playsinline: "", loop: "" });
      video.muted = true; // muted: a page may play several videos at once without a click per video
      video.addEventListener("loadedmetadata", updateScrubRange);
      card.append(video);
    } else {
      card.append(el("div", { class: "no-video", text: take.status }));
    }
    const caption = el("figcaption");
    caption.append(el("kbd", { text: String(take.number) }), " ", el("span", { text: take.label }));
    caption.append(el("span", { class: "take-status " + statusClass(take.status), text: take.status }));
    if (take.cost !== null) caption.append(el("span", { class: "cost", text: `${take.cost} units` }));
    caption.append(el("span", { class: "selected-mark", text: "selected" }));
    if (take.url) {
      const pick = el("button", { type: "button", class: "pick", text: "pick" });
      pick.addEventListener("click", () => decide("select", { take: take.number }));
      caption.append(pick);
    }
    card.append(caption);
    return card;
  }

  function renderTakes(shot) {
    pause();
    $("takes").replaceChildren(...shot.takes.filter((t) => !t.stale).map(takeCard));
    if (!shot.takes.some((t) => !t.stale)) $("takes").append(el("p", { class: "empty", text: "no take yet" }));
    $("scrub").value = "0";
    $("clock").textContent = "0.00 s";
  }

  function renderDetails(shot) {
    $("boards").replaceChildren(
      ...shot.boards.map((board) => el("img", { src: board.url, alt: board.ref, title: board.ref })),
    );
    $("prompt").textContent = shot.prompt;
    $("negative").textContent = shot.negative_prompt ? "negative: " + shot.negative_prompt : "";
    const params = $("params");
    params.replaceChildren();
    for (const [name, value] of Object.entries(shot.params)) {
      if (value === null) continue;
      params.append(el("dt", { text: name }), el("dd", { text: String(value) }));
    }
    const previous = shot.takes.filter((t) => t.stale);
    $("previous").replaceChildren();
    for (const take of previous) {
      const card = takeCard(take);
      if (take.prompt) card.append(el("p", { class: "old-prompt", text: "prompt then: " + take.prompt }));
      $("previous").append(card);
    }
    if (!previous.length) $("previous").append(el("p", { class: "empty", text: "none" }));
  }

  // --- playing in sync -----------------------------------------------------------------------------------------

  function videos() {
    return [...document.querySelectorAll("#shot video")];
  }

  function updateScrubRange() {
    const first = videos()[0];
    if (first && Number.isFinite(first.duration)) $("scrub").max = String(first.duration);
  }

  async function play() {
    const all = videos();
    if (!all.length) return;
    const at = all[0].currentTime;
    for (const video of all) video.currentTime = at;
    playing = true;
    $("play").textContent = "pause";
    await Promise.all(all.map((video) => video.play().catch(() => undefined)));
    if (syncTimer === null) syncTimer = setInterval(keepInSync, 50);
  }

  function pause() {
    playing = false;
    $("play").textContent = "play";
    for (const video of videos()) video.pause();
    if (syncTimer !== null) {
      clearInterval(syncTimer);
      syncTimer = null;
    }
  }

  function togglePlay() {
    if (playing) pause();
    else play();
  }

  function keepInSync() {
    const [first, ...others] = videos();
    if (!first || !playing) return;
    for (const video of others) {
      if (!video.seeking && Math.abs(video.currentTime - first.currentTime) > DRIFT_S) {
        video.currentTime = first.currentTime;
      }
      if (video.paused) video.play().catch(() => undefined);
    }
    $("scrub").value = String(first.currentTime);
    $("clock").textContent = first.currentTime.toFixed(2) + " s";
  }

  function scrubTo(seconds) {
    for (const video of videos()) video.currentTime = seconds;
    $("clock").textContent = seconds.toFixed(2) + " s";
  }

  // --- moving and deciding -------------------------------------------------------------------------------------

  function goTo(shotId) {
    if (shotId === currentId) return;
    pause();
    currentId = shotId;
    closeRetake();
    renderStrip();
    renderShot();
  }

  function move(step) {
    const shots = visibleShots();
    if (!shots.length) return;
    const at = shots.findIndex((shot) => shot.id === currentId);
    const next = Math.min(shots.length - 1, Math.max(0, (at < 0 ? 0 : at) + step));
    goTo(shots[next].id);
  }

  function pick(number) {
    const shot = currentShot();
    if (!shot) return;
    const take = shot.takes.find((t) => t.number === number);
    if (!take) {
      showError(`${shot.id} has no take ${number}`);
      return;
    }
    decide("select", { take: number });
  }

  function openRetake() {
    $("retake-box").hidden = false;
    $("retake-note").value = "";
    $("retake-note").focus();
  }

  function closeRetake() {
    $("retake-box").hidden = true;
  }

  function sendRetake() {
    const note = $("retake-note").value.trim();
    if (!note) {
      showError("a retake needs a note saying what to change");
      return;
    }
    closeRetake();
    decide("retake", { note });
  }

  function onKey(event) {
    if (event.target.closest && event.target.closest("input, textarea, select")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "j") move(-1);
    else if (key === "k") move(1);
    else if (/^[1-9]$/.test(key)) pick(Number(key));
    else if (key === "a") decide("approve");
    else if (key === "r") openRetake();
    else if (key === " ") togglePlay();
    else return;
    event.preventDefault();
  }

  function start() {
    $("play").addEventListener("click", togglePlay);
    $("scrub").addEventListener("input", () => scrubTo(Number($("scrub").value)));
    $("approve").addEventListener("click", () => decide("approve"));
    $("retake").addEventListener("click", openRetake);
    $("hold").addEventListener("click", () => decide("hold"));
    $("retake-send").addEventListener("click", sendRetake);
    $("retake-cancel").addEventListener("click", closeRetake);
    $("retake-note").addEventListener("keydown", (event) => {
      if (event.key === "Enter") sendRetake();
      else if (event.key === "Escape") closeRetake();
    });
    $("filter").addEventListener("change", () => {
      const shots = visibleShots();
      if (shots.length && !shots.some((shot) => shot.id === currentId)) goTo(shots[0].id);
      renderStrip();
    });
    document.addEventListener("keydown", onKey);
    poll();
  }

  start();
})();
