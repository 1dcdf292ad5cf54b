// The audit dashboard: sign in (dev token, quality role), fetch the server-rendered fragments.
const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("eras-audit-token") };

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function fragment(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!response.ok) throw new Error(`${response.status}: ${(await response.json()).detail}`);
  return response.text();
}

async function signIn(event) {
  event.preventDefault();
  const response = await fetch("/auth/dev-token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ subject: $("user").value, roles: ["quality"], wards: [] }),
  });
  if (!response.ok) return say("Sign-in failed", true);
  state.token = (await response.json()).access_token;
  sessionStorage.setItem("eras-audit-token", state.token);
  start();
}

async function show(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams();
  for (const [key, value] of new FormData($("filters"))) if (value) params.append(key, value);
  say("Loading…");
  try {
    $("dashboard").innerHTML = await fragment(`/ui/audit/dashboard?${params}`);
    $("patient").replaceChildren();
    say("");
  } catch (error) {
    say(String(error.message), true);
  }
}

// A chart's CSV needs the token too: fetch it, then save it under the server's file name.
async function download(link) {
  const response = await fetch(link.getAttribute("href"), { headers: { Authorization: `Bearer ${state.token}` } });
  if (!response.ok) return say(`${response.status}: CSV not available`, true);
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  const save = document.createElement("a");
  save.href = URL.createObjectURL(await response.blob());
  save.download = name ? name[1] : "chart.csv";
  save.click();
  URL.revokeObjectURL(save.href);
}

async function clicked(event) {
  const csv = event.target.closest("a.csv");
  if (csv) {
    event.preventDefault();
    return download(csv);
  }
  const link = event.target.closest("a.drill");
  if (!link) return;
  event.preventDefault();
  try {
    $("patient").innerHTML = await fragment(`/ui/audit/patient/${encodeURIComponent(link.dataset.episode)}`);
    $("patient").scrollIntoView();
  } catch (error) {
    say(String(error.message), true);
  }
}

function start() {
  $("signin").hidden = true;
  $("filters").hidden = false;
  show();
}

$("signin").addEventListener("submit", signIn);
$("filters").addEventListener("submit", show);
$("dashboard").addEventListener("click", clicked);
if (state.token) start();
