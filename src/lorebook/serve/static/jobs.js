// Teach and evaluate pages: pick or upload a pack, start a job, follow its progress over SSE.
const KEY = new URLSearchParams(location.search).get("key") || sessionStorage.getItem("lorebookKey");
if (KEY) sessionStorage.setItem("lorebookKey", KEY);
const auth = KEY ? {Authorization: "Bearer " + KEY} : {};
const $ = id => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, {...options, headers: {...auth, ...(options.headers || {})}});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}
async function loadPacks() {
  $("pack").innerHTML = "";
  for (const name of await api("/api/packs")) $("pack").add(new Option(name, name));
}
$("upload").addEventListener("change", async () => {
  const data = new FormData();
  data.append("file", $("upload").files[0]);
  try { await api("/api/packs", {method: "POST", body: data}); await loadPacks(); } catch (e) { $("error").textContent = e.message; }
});
// "replay=0 lr=1e-3 formats=qa,statement" -> {replay: 0, lr: 0.001, formats: "qa,statement"}: any CLI option
function parseOptions(text) {
  const options = {};
  for (const pair of (text || "").split(/\s+/).filter(Boolean)) {
    const [key, ...rest] = pair.split("=");
    const value = rest.join("=");
    options[key.replace(/^--/, "")] = value === "" || value === "true" ? true : value === "false" ? false
      : (isNaN(Number(value)) ? value : Number(value));
  }
  return options;
}
async function startJob(kind, options) {
  $("error").textContent = "";
  try {
    const job = await api("/api/jobs", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({kind, pack: $("pack").value, options: kind === "sweep" ? options : {...parseOptions($("more").value), ...options}})});
    follow(job.id);
  } catch (e) { $("error").textContent = e.message; }
}
function follow(id) {
  const url = new URL(`/api/jobs/${id}/events`, location.href);
  if (KEY) url.searchParams.set("key", KEY);
  const events = new EventSource(url);
  events.onmessage = event => {
    const job = JSON.parse(event.data);
    $("progress").value = job.progress;
    $("state").textContent = `job ${job.id} (${job.kind}): ${job.status}`;
    $("output").textContent = job.log.join("\n");
    if (job.status !== "running") { events.close(); if (window.onJobDone) window.onJobDone(job); }
  };
}
loadPacks();
