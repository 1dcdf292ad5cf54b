// The patient view: fetches the server-rendered timeline with the worklist's sign-in (dev token).
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
  if (response.status === 401 && document.body.dataset.devMode === "true") $("signin").hidden = false;
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
  sessionStorage.setItem("eras-token", (await response.json()).access_token);
  sessionStorage.setItem("eras-wards", wards.join(" "));
  $("signin").hidden = true;
  load();
}

$("signin").addEventListener("submit", signIn);
$("print").addEventListener("click", () => window.print());
load();
