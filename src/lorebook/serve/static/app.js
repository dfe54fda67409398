// The chat page: streamed text over /v1/chat/completions, voice turns over the /api/voice WebSocket.
const params = new URLSearchParams(location.search);
if (params.get("key")) sessionStorage.setItem("lorebookKey", params.get("key"));
const KEY = sessionStorage.getItem("lorebookKey");
const CLIENT = Math.random().toString(36).slice(2);
const headers = {"Content-Type": "application/json", "X-Lorebook-Client": CLIENT};
if (KEY) headers.Authorization = "Bearer " + KEY;
const $ = id => document.getElementById(id);
let history = [];

function say(role, text, extra) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.innerHTML = `<b>${role === "user" ? "you" : role === "assistant" ? $("persona").value : ""}</b> `;
  const span = document.createElement("span");
  span.textContent = text;
  div.appendChild(span);
  if (extra) div.classList.add(extra);
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return span;
}
function temperature() {  // blank: the persona's own setting
  const value = parseFloat($("temperature").value);
  return Number.isFinite(value) ? Math.min(Math.max(value, 0), 2) : undefined;
}
function modelName() {
  const adapters = $("adapters").value.split(",").map(s => s.trim()).filter(Boolean);
  return [$("persona").value, ...adapters].join("+");
}

async function loadPersonas() {
  const response = await fetch("/api/personas", {headers});
  for (const p of await response.json()) {
    const option = document.createElement("option");
    option.value = option.textContent = p.name;
    $("persona").appendChild(option);
  }
}

// ---- text chat: SSE from the OpenAI-compatible route ----
async function sendText(text) {
  say("user", text);
  history.push({role: "user", content: text});
  if ($("speak").checked && voice.socket && voice.ready) { voice.pending = say("assistant", ""); voice.socket.send(JSON.stringify({type: "text", text})); return; }
  const span = say("assistant", "");
  const response = await fetch("/v1/chat/completions", {method: "POST", headers,
    body: JSON.stringify({model: modelName(), messages: history, stream: true, temperature: temperature()})});
  if (!response.ok) { span.textContent = (await response.json()).error.message; return; }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", reply = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const parsed = JSON.parse(data);
      if (parsed.error) { span.textContent += " [" + parsed.error.message + "]"; continue; }
      const delta = parsed.choices[0]?.delta?.content || "";
      reply += delta;
      span.textContent = reply;
    }
  }
  history.push({role: "assistant", content: reply});
  span.parentElement.dataset.done = "1";
}

// ---- voice: microphone → 16 kHz PCM → socket; audio + mouth cues back ----
const voice = {socket: null, ready: false, context: null, next: 0, sources: [], header: null, pending: null,
               mode: null, talking: false, outbox: []};
const OUTBOX_LIMIT = 200;  // ~50 s of microphone frames kept while the voice models load

// Until the server says `ready` (models loading: seconds on first use), what the user says is queued, not lost.
function voiceSend(message) {
  if (!voice.socket) return;
  if (voice.ready) voice.socket.send(message);
  else if (voice.outbox.length < OUTBOX_LIMIT) voice.outbox.push(message);
}

async function connectVoice(mode) {
  if (voice.socket && voice.mode === mode) return;
  if (voice.socket) voice.socket.close();
  voice.context = voice.context || new AudioContext();
  Face.clock = voice.context;
  const url = new URL("/api/voice", location.href);
  url.protocol = url.protocol.replace("http", "ws");
  if (KEY) url.searchParams.set("key", KEY);
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  voice.socket = socket; voice.mode = mode; voice.ready = false; voice.outbox = [];
  $("status").textContent = "loading voice…";
  socket.onopen = () => socket.send(JSON.stringify({type: "start", persona: modelName(), mode, temperature: temperature()}));
  socket.onmessage = event => onVoiceMessage(event.data);
  socket.onclose = () => { voice.ready = false; $("status").textContent = ""; };
  await startMicrophone();
}

function onVoiceMessage(data) {
  if (data instanceof ArrayBuffer) return playChunk(data);
  const message = JSON.parse(data);
  if (message.type === "ready") {
    voice.ready = true; $("status").textContent = "voice ready (" + message.mode + ")";
    for (const queued of voice.outbox.splice(0)) voice.socket.send(queued);
  }
  else if (message.type === "speech_start") stopPlayback();
  else if (message.type === "transcript") { say("user", message.text); history.push({role: "user", content: message.text}); voice.pending = say("assistant", ""); }
  else if (message.type === "text") { if (!voice.pending) voice.pending = say("assistant", ""); voice.pending.textContent += message.text; }
  else if (message.type === "audio") voice.header = message;
  else if (message.type === "done") {
    history.push({role: "assistant", content: message.reply});
    if (voice.pending) voice.pending.parentElement.dataset.done = "1";
    voice.pending = null;
    $("status").textContent = `first audio ${message.timings.first_audio.toFixed(2)} s` + (message.speech_id ? ` · cues: /api/speech/${message.speech_id}/cues` : "");
  } else if (message.type === "error") say("note", message.message);
}

function playChunk(buffer) {
  const header = voice.header, context = voice.context;
  const pcm = new Int16Array(buffer);
  const audio = context.createBuffer(1, pcm.length, header.sample_rate);
  const channel = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
  const source = context.createBufferSource();
  source.buffer = audio;
  source.connect(context.destination);
  const start = Math.max(context.currentTime + 0.05, voice.next);
  source.start(start);
  voice.next = start + audio.duration + 0.15;  // a breath between sentences
  voice.sources.push(source);
  Face.schedule(header.cues, start);
}

function stopPlayback() {
  for (const source of voice.sources) { try { source.stop(); } catch (e) { /* already ended */ } }
  voice.sources = []; voice.next = 0; Face.stop();
}

async function startMicrophone() {
  if (voice.micStarted) return;
  voice.micStarted = true;
  const stream = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: true, noiseSuppression: true}});
  const context = voice.context;
  const source = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(4096, 1, 1);
  const ratio = context.sampleRate / 16000;
  processor.onaudioprocess = event => {
    if (!voice.socket || (voice.mode === "ptt" && !voice.talking)) return;
    const input = event.inputBuffer.getChannelData(0);
    const out = new Int16Array(Math.floor(input.length / ratio));
    for (let i = 0; i < out.length; i++) out[i] = Math.max(-1, Math.min(1, input[Math.floor(i * ratio)])) * 32767;
    voiceSend(out.buffer);
  };
  source.connect(processor);
  processor.connect(context.destination);
}

$("form").addEventListener("submit", event => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text) { $("text").value = ""; sendText(text); }
});
$("handsfree").addEventListener("click", async () => {
  const on = voice.mode !== "vad";
  $("handsfree").textContent = "hands-free: " + (on ? "on" : "off");
  $("handsfree").classList.toggle("on", on);
  if (on) await connectVoice("vad"); else if (voice.socket) { voice.socket.close(); voice.socket = null; voice.mode = null; }
});
const ptt = $("ptt");
ptt.addEventListener("pointerdown", async () => {
  await connectVoice("ptt"); stopPlayback(); voice.talking = true; ptt.classList.add("on");
  voiceSend(JSON.stringify({type: "cancel"}));
});
ptt.addEventListener("pointerup", () => {
  voice.talking = false; ptt.classList.remove("on");
  voiceSend(JSON.stringify({type: "end"}));
});
$("stop").addEventListener("click", () => { stopPlayback(); voiceSend(JSON.stringify({type: "cancel"})); });
$("clear").addEventListener("click", () => { history = []; $("log").innerHTML = ""; if (voice.socket) { voice.socket.close(); voice.socket = null; voice.mode = null; } });
loadPersonas();
