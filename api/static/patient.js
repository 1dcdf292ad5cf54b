// The patient view: fetches the server-rendered timeline with the worklist's sign-in.
"use strict";

const $ = (id) => document.getElementById(id);
const patient = document.body.dataset.patient;

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

async function load() {
  const token = sessionStorage.getItem("eras-token");
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  say("Loading…");
  const response = await fetch(`/ui/patients/${encodeURIComponent(patient)}/timeline`, { headers });
  if (response.ok) {
    $("timeline").innerHTML = await response.text();
    return say("");
  }
  const detail = (await response.json().catch(() => ({}))).detail || `request failed (${response.status})`;
  say(detail, true);
  if (response.status === 401) $("signin").hidden = false;
}

$("print").addEventListener("click", () => window.print());
load();
