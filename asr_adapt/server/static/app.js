// The asr-adapt web page: pick a profile, record from the microphone (words appear live over
// WebSocket /v1/live) or send a file to POST /v1/audio/transcriptions.
import { LiveSession } from "/static/live.js";

const KEY_STORAGE = "asr-adapt-api-key"; // sessionStorage: forgotten when the tab closes

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
const modelSelect = $("model");
const recordButton = $("record");
const liveStatus = $("live-status");
const committed = $("committed");
const partial = $("partial");
const dropZone = $("drop-zone");
const fileInput = $("file-input");
const fileStatus = $("file-status");
const fileText = $("file-text");

let session = null;

function apiKey() {
  return keyInput.value.trim();
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function show(element, message, isError = false) {
  element.textContent = message;
  element.classList.toggle("error", isError);
}

// The server answers errors the OpenAI way: {"error": {"message", "type", "code"}}.
async function errorOf(response) {
  let message = "";
  try {
    message = (await response.json()).error?.message ?? "";
  } catch {
    // not JSON (a proxy's page, say): the status says enough
  }
  if (response.status === 401) return "The server needs a valid API key: enter it above.";
  return message || `The server answered ${response.status} ${response.statusText}.`;
}

// ------------------------------------------------------------------ models

let loading = null; // the model list being fetched: Enter in the key field asks twice at once

function loadModels() {
  loading ??= fetchModels().finally(() => { loading = null; });
  return loading;
}

async function fetchModels() {
  modelSelect.disabled = true;
  recordButton.disabled = true;
  const previous = modelSelect.value || sessionStorage.getItem("asr-adapt-model");
  let response;
  try {
    response = await fetch("/v1/models", { headers: authHeaders() });
  } catch {
    show(liveStatus, "Cannot reach the server.", true);
    return;
  }
  if (!response.ok) {
    modelSelect.replaceChildren(new Option("(none)", ""));
    show(liveStatus, await errorOf(response), true);
    return;
  }
  const ids = (await response.json()).data.map((model) => model.id);
  modelSelect.replaceChildren(...ids.map((id) => new Option(id, id)));
  if (ids.length === 0) {
    modelSelect.replaceChildren(new Option("(none)", ""));
    show(liveStatus, "This key may use no profile or model.", true);
    return;
  }
  if (ids.includes(previous)) modelSelect.value = previous;
  modelSelect.disabled = false;
  recordButton.disabled = false;
  show(liveStatus, "Choose a profile, then press Record.");
}

// ------------------------------------------------------------------ live

function setRecording(recording) {
  recordButton.textContent = recording ? "Stop" : "Record";
  recordButton.setAttribute("aria-pressed", String(recording));
  modelSelect.disabled = recording;
  keyInput.disabled = recording;
  $("reload-models").disabled = recording;
}

async function startLive() {
  committed.textContent = "";
  partial.textContent = "";
  setRecording(true);
  session = new LiveSession({
    model: modelSelect.value,
    apiKey: apiKey(),
    onFinal(text) {
      committed.textContent += (committed.textContent ? " " : "") + text;
    },
    onPartial(text) {
      partial.textContent = text;
    },
    onStatus(message, isError) {
      show(liveStatus, message, isError);
    },
    onEnd() {
      partial.textContent = "";
      setRecording(false);
      recordButton.disabled = false;
      session = null;
    },
  });
  await session.start();
}

recordButton.addEventListener("click", async () => {
  if (session) {
    recordButton.disabled = true; // until the server's last words arrive
    session.stop();
  } else {
    await startLive();
  }
});

// ------------------------------------------------------------------ files

async function transcribeFile(file) {
  if (!modelSelect.value) {
    show(fileStatus, "Choose a profile first.", true);
    return;
  }
  fileText.textContent = "";
  show(fileStatus, `Transcribing ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", modelSelect.value);
  form.append("response_format", "json");
  let response;
  try {
    response = await fetch("/v1/audio/transcriptions", { method: "POST", headers: authHeaders(), body: form });
  } catch {
    show(fileStatus, "Cannot reach the server.", true);
    return;
  }
  if (!response.ok) {
    show(fileStatus, await errorOf(response), true);
    return;
  }
  fileText.textContent = (await response.json()).text;
  show(fileStatus, `${file.name}: done.`);
}

fileInput.addEventListener("change", () => {
  if (fileInput.files.length > 0) transcribeFile(fileInput.files[0]);
  fileInput.value = ""; // the same file chosen again is sent again
});

dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("over");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) transcribeFile(file);
});

// ------------------------------------------------------------------ settings

function useKey() {
  if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
  else sessionStorage.removeItem(KEY_STORAGE);
  loadModels();
}

keyInput.value = sessionStorage.getItem(KEY_STORAGE) ?? "";
keyInput.addEventListener("change", useKey);
modelSelect.addEventListener("change", () => sessionStorage.setItem("asr-adapt-model", modelSelect.value));
$("settings").addEventListener("submit", (event) => {
  event.preventDefault(); // Enter in the key field, or the button: list the models again
  useKey();
});
loadModels();
