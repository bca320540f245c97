// The search page: query -> /api/search -> a grid of cards; a card plays its video from the
// moment. Every string from the server goes into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(x, digits) {
  return Number(x).toFixed(digits);
}

function momentText(hit) {
  if (!hit.confident) return "whole video (no clear moment)";
  if (hit.start !== null && hit.end !== null) return `${fmt(hit.start, 1)}–${fmt(hit.end, 1)} s`;
  return `frames ${hit.span_frames[0]}–${hit.span_frames[1]}`;
}

// the span the player shows: the moment, or the whole video when search is unsure of it
function playSpan(hit) {
  if (hit.start === null || hit.end === null) return null;
  return hit.confident ? [hit.start, hit.end] : [0, hit.end];
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
  return body;
}

function card(hit) {
  const li = el("li", "card");
  const button = el("button", "open");
  button.type = "button";
  button.dataset.video = hit.video;
  if (hit.thumbnail) {
    const img = el("img", "thumb");
    img.src = hit.thumbnail;
    img.alt = `best moment of ${hit.video}`;
    img.loading = "lazy";
    button.append(img);
  } else {
    button.append(el("div", "thumb none", "no picture"));
  }
  const body = el("div", "body");
  body.append(el("div", "title", `${hit.rank}. ${hit.video}`));
  body.append(el("div", "score", `score ${fmt(hit.score, 4)}`));
  const branches = Object.entries(hit.branches);
  if (branches.length > 1) {
    body.append(el("div", "branches muted", branches.map(([b, s]) => `${b} ${fmt(s, 4)}`).join(" · ")));
  }
  body.append(el("div", hit.confident ? "moment" : "moment unsure", momentText(hit)));
  if (!hit.media) body.append(el("div", "muted small", "source video not available"));
  button.append(body);
  button.addEventListener("click", () => play(hit, li));
  li.append(button);
  return li;
}

function play(hit, li) {
  document.querySelectorAll(".card.selected").forEach((c) => c.classList.remove("selected"));
  li.classList.add("selected");
  const video = $("video");
  const missing = $("unavailable");
  $("player").hidden = false;
  if (!hit.media) {
    video.removeAttribute("src");
    video.load();
    video.hidden = true;
    missing.hidden = false;
    missing.textContent = `Cannot play ${hit.video}: ${hit.unavailable}`;
    $("now").textContent = "";
    return;
  }
  missing.hidden = true;
  video.hidden = false;
  const span = playSpan(hit);
  // HTML5 media fragment: the browser starts at the moment and stops at its end
  video.src = span ? `${hit.media}#t=${fmt(span[0], 2)},${fmt(span[1], 2)}` : hit.media;
  video.dataset.video = hit.video;
  $("now").textContent = `${hit.video}: ${momentText(hit)}`;
  video.play().catch(() => {}); // autoplay may be refused; the controls still work
  $("player").scrollIntoView({ block: "nearest" });
}

async function runSearch(text, byId, k) {
  const results = $("results");
  const status = $("status");
  status.classList.remove("warn");
  status.textContent = "searching…";
  const params = new URLSearchParams({ k: String(k) });
  params.set(byId ? "query_id" : "q", text);
  try {
    const answer = await getJSON(`/api/search?${params}`);
    results.replaceChildren(...answer.results.map(card));
    status.textContent = `${answer.results.length} videos for “${answer.query}”`;
    history.replaceState(null, "", `?${params}`);
  } catch (err) {
    results.replaceChildren();
    status.classList.add("warn");
    status.textContent = err.message;
  }
}

async function start() {
  try {
    info = await getJSON("/api/info");
  } catch (err) {
    $("status").textContent = `the server does not answer: ${err.message}`;
    return;
  }
  const kind = info.kind === "zero-shot" ? "zero-shot CLIP index" : `trained index (${info.branches.join(" + ")})`;
  const sources = info.sources ? "" : " · no source videos on record";
  $("about").textContent = `${info.index}: ${info.videos} videos, ${kind}${sources}`;
  $("k").max = String(info.max_k);
  $("q").maxLength = info.max_query_chars;
  $("by-id").parentElement.hidden = !info.stored_queries;
  if (info.report) {
    const a = el("a", "", "training report");
    a.href = info.report;
    $("report-link").replaceChildren("· ", a);
  }
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch($("q").value, $("by-id").checked, Number($("k").value) || 12);
  });
  const params = new URLSearchParams(location.search);
  const asked = params.get("q") || params.get("query_id");
  if (asked) {
    $("q").value = asked;
    $("by-id").checked = params.has("query_id");
    if (params.get("k")) $("k").value = params.get("k");
    runSearch(asked, params.has("query_id"), Number($("k").value) || 12);
  }
}

// a file the browser cannot decode (HEVC, some AVI) says so instead of showing a black box
$("video").addEventListener("error", () => {
  const video = $("video");
  if (!video.getAttribute("src")) return;
  $("unavailable").hidden = false;
  $("unavailable").textContent = `This browser cannot play ${video.dataset.video || "this video"} (its format or codec); the file is served at ${video.getAttribute("src").split("#")[0]}`;
});

start();
