// The worklist page: signs in (dev mode) or uses the EHR launch's session cookie, loads the ward's
// open tasks, polls, completes and declines.
"use strict";

// pages: how many pages of the ward are shown (the API sends the most urgent 50 first; "Show
// more" fetches the next by cursor, and a refresh reloads as many as were shown).
const state = { token: sessionStorage.getItem("eras-token"), wards: [], timer: null, pages: 1 };
const $ = (id) => document.getElementById(id);

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    // Without a token the browser's session cookie (SMART launch) signs the request.
    headers: { "Content-Type": "application/json",
      ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `request failed (${response.status})`);
  return data;
}

async function signIn(event) {
  event.preventDefault();
  const wards = $("wards").value.split(/[\s,]+/).filter(Boolean);
  const response = await fetch("/auth/dev-token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ subject: $("user").value, roles: ["nurse"], wards }),
  });
  if (!response.ok) return say("Sign-in failed", true);
  state.token = (await response.json()).access_token;
  sessionStorage.setItem("eras-token", state.token);
  sessionStorage.setItem("eras-wards", wards.join(" "));
  start(wards);
}

function start(wards) {
  state.wards = wards;
  $("ward").replaceChildren(...wards.map((w) => new Option(w || "all my wards", w)));
  $("signin").hidden = true;
  $("controls").hidden = false;
  load();
  clearInterval(state.timer);
  state.timer = setInterval(load, Number(document.body.dataset.pollSeconds) * 1000);
}

async function load() {
  try {
    const base = `/worklist?ward=${encodeURIComponent($("ward").value)}&window=12h`;
    let data = await api("GET", base);
    const items = [...data.items];
    for (let page = 1; page < state.pages && data.next_cursor; page++) {
      data = await api("GET", `${base}&cursor=${encodeURIComponent(data.next_cursor)}`);
      items.push(...data.items);
    }
    render(items);
    more(items.length, data.total, data.next_cursor);
  } catch (error) {
    say(error.message, true);
  }
}

function more(shown, total, cursor) {
  $("more").hidden = !cursor;
  $("shown").textContent = shown < total ? `Showing ${shown} of ${total} open tasks, most urgent first.` : "";
}

function showMore() {
  state.pages += 1;
  load();
}

function changeWard() {
  state.pages = 1;
  load();
}

// "late": the window has closed; completing it now is recorded as done late (not compliant).
const GROUPS = { late: "Window closed: done late if done now", overdue: "Overdue", due: "Due now" };
const BADGES = { late: "late" };

function groupKey(item) {
  if ($("group").value === "patient") return item.patient_display;
  return GROUPS[item.status] || "Coming up";
}

function render(items) {
  if (document.activeElement && document.activeElement.closest(".decline")) return;
  const groups = new Map();
  for (const item of items) {
    const key = groupKey(item);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(item);
  }
  const sections = [...groups].map(([name, rows]) => {
    const section = document.createElement("section");
    section.className = "group";
    const title = document.createElement("h2");
    title.textContent = name;
    section.append(title, ...rows.map(card));
    return section;
  });
  $("list").replaceChildren(...sections);
  if (!items.length) $("list").textContent = "No open tasks on this ward.";
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" }) : "—";
}

function card(item) {
  const el = document.createElement("article");
  el.className = `task ${item.status}`;
  el.dataset.key = item.key;
  const body = document.createElement("div");
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = BADGES[item.status] || item.status;
  if (item.status === "late") badge.title = "The window has closed: completing it now records it as done late, not compliant.";
  const title = document.createElement("strong");
  title.textContent = ` ${item.title}`;
  const meta = document.createElement("div");
  meta.className = "meta";
  const pod = item.pod === null ? "" : ` · POD${item.pod}`;
  // A tap on the patient opens their whole pathway (the timeline page).
  const patient = document.createElement("a");
  patient.className = "patient";
  patient.href = `/ui/patients/${encodeURIComponent(item.patient_ref.replace(/^Patient\//, ""))}`;
  patient.textContent = `${item.patient_display} (${item.patient_ref})`;
  meta.append(patient, `${pod} · due ${when(item.due)} · ${item.role} · ${item.priority}`);
  const how = document.createElement("div");
  how.className = "meta";
  how.textContent = item.instructions || "";
  body.append(badge, title, meta, how);
  const actions = document.createElement("div");
  actions.className = "actions";
  const done = button("Done", "complete", () => complete(item));
  done.setAttribute("aria-label", `Complete: ${item.title}, ${item.patient_display}`);
  const decline = button("Decline", "decline-open", () => openDecline(el, item));
  actions.append(done, decline);
  el.append(body, actions);
  return el;
}

function button(text, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

async function complete(item) {
  let value;
  if (item.record) {
    const answer = prompt(`${item.record.label}${item.record.unit ? ` (${item.record.unit})` : ""}`);
    if (answer === null) return;
    value = answer === "" || isNaN(Number(answer)) ? answer || undefined : Number(answer);
  }
  try {
    const result = await api("POST", `/worklist/${encodeURIComponent(item.key)}/complete`, { value });
    say(result && result.status === "done-late"
      ? `Done late: ${item.title} (after its window closed; not compliant)`
      : `Done: ${item.title}`);
  } catch (error) {
    say(error.message, true);
  }
  load();
}

function openDecline(el, item) {
  if (el.querySelector(".decline")) return;
  const form = $("decline-template").content.firstElementChild.cloneNode(true);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await api("POST", `/worklist/${encodeURIComponent(item.key)}/decline`,
        { reason: data.get("reason"), text: data.get("text") || null });
      say(`Declined: ${item.title}`);
    } catch (error) {
      say(error.message, true);
    }
    form.remove();
    load();
  });
  form.querySelector(".cancel").addEventListener("click", () => form.remove());
  el.append(form);
  form.querySelector("select").focus();
}

$("signin").addEventListener("submit", signIn);
$("ward").addEventListener("change", changeWard);
$("more").addEventListener("click", showMore);
$("group").addEventListener("change", load);
$("refresh").addEventListener("click", load);
// A launch from the EHR lands on /ui/worklist?ward=<its ward> (or no ward: all the user's wards).
const launchedWard = new URLSearchParams(location.search).get("ward");
if (state.token) start((sessionStorage.getItem("eras-wards") || "").split(" ").filter(Boolean));
else if (launchedWard || document.body.dataset.devMode !== "true") start([launchedWard || ""]);
