// The "try it" page: one photo in, the chosen classifier's answer and /v1/edges out, side by side. Plain JS, no
// dependencies, every URL relative so the page also works behind a path prefix.

const TOP_K = 5;
const KEY_STORAGE = "tritonserve.apiKey";

const $ = (id) => document.getElementById(id);
const fileInput = $("file");
const dropzone = $("dropzone");
const keyInput = $("api-key");
const modelSelect = $("model-choice");
const objectUrls = { photo: null, edges: null };
let currentFile = null;

function authHeaders() {
  const key = keyInput.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function showKeyState() {
  $("key-state").textContent = keyInput.value.trim() ? "· set" : "· none";
}

function setObjectUrl(slot, img, blob) {
  if (objectUrls[slot]) URL.revokeObjectURL(objectUrls[slot]);
  objectUrls[slot] = blob ? URL.createObjectURL(blob) : null;
  if (objectUrls[slot]) img.src = objectUrls[slot];
  else img.removeAttribute("src");
}

// A failed call, carrying the HTTP status so a 401 can open the API-key field.
class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// An API error as one readable line: "Classify failed with 401 unauthorized: a valid API key is required ...".
async function failure(response, what) {
  let detail = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) detail = `${body.error.code}: ${String(body.error.message).replace(/\.$/, "")}`;
  } catch {
    // Not JSON (a proxy's HTML page, say): the status line is all there is.
  }
  const hint = response.status === 401 ? " Set the API key above." : "";
  return new ApiFailure(response.status, `${what} failed with ${response.status} ${detail}.${hint}`);
}

// One POST of the raw file, timed in this browser (a round trip: upload, queue, inference, download).
async function post(path, file) {
  const started = performance.now();
  const response = await fetch(path, {
    method: "POST",
    body: file,
    headers: { "Content-Type": file.type || "application/octet-stream", ...authHeaders() },
  });
  return { response, ms: performance.now() - started };
}

function formatMs(ms) {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function showErrors(messages) {
  const box = $("error");
  box.replaceChildren(
    ...messages.map((message) => {
      const p = document.createElement("p");
      p.textContent = message;
      return p;
    }),
  );
  box.hidden = messages.length === 0;
}

function renderPredictions(body) {
  const list = $("predictions");
  list.replaceChildren(
    ...body.predictions.map((prediction) => {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = prediction.label;
      const track = document.createElement("span");
      track.className = "bar";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.style.width = `${(prediction.probability * 100).toFixed(2)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "probability";
      value.textContent = `${(prediction.probability * 100).toFixed(1)}%`;
      item.append(label, track, value);
      item.title = `class ${prediction.index}`;
      return item;
    }),
  );
  $("model").textContent = body.model;
  $("model-version").textContent = body.model_version;
  const weights = typeof body.weights === "string" ? body.weights : null;
  $("weights").textContent = weights ?? "not reported";
  // Each answer names the weights that produced it: the warning follows the answer, not the page's first one.
  $("weights-warning").hidden = !(weights && weights.startsWith("seed:"));
  $("photo-info").textContent = `${body.image.width}×${body.image.height} ${body.image.format}`;
}

async function classify(file) {
  const { response, ms } = await post(`${modelSelect.value}?top_k=${TOP_K}`, file);
  if (!response.ok) throw await failure(response, "Classify");
  renderPredictions(await response.json());
  $("classify-latency").textContent = `classify ${formatMs(ms)}`;
  $("predictions-card").hidden = false;
}

async function edges(file) {
  const { response, ms } = await post("v1/edges", file);
  if (!response.ok) throw await failure(response, "Edges");
  setObjectUrl("edges", $("edges"), await response.blob());
  $("edges-latency").textContent = `edges ${formatMs(ms)}`;
  $("edges-figure").hidden = false;
}

function resetResult() {
  $("predictions").replaceChildren();
  for (const id of ["classify-latency", "edges-latency", "photo-info"]) $(id).textContent = "";
  for (const id of ["model", "model-version", "weights"]) $(id).textContent = "–";
  $("weights-warning").hidden = true;
  setObjectUrl("edges", $("edges"), null);
  // Each part shows once its answer lands: a failed call leaves no empty panel or broken image behind.
  for (const id of ["edges-figure", "predictions-card"]) $(id).hidden = true;
  $("photo").hidden = false;
}

// What the gateway answered about a call that failed, for the error box; a 401 opens the API-key field.
function report(outcomes) {
  const reasons = outcomes.filter((o) => o.status === "rejected").map((o) => o.reason);
  // A network failure (gateway down) is a TypeError from fetch: say so in words.
  showErrors(reasons.map((r) => (r instanceof ApiFailure ? r.message : `The gateway could not be reached (${r}).`)));
  if (reasons.some((r) => r.status === 401)) {
    $("key-panel").open = true;
    keyInput.focus();
  }
  return reasons.length < outcomes.length;
}

async function analyse(file) {
  if (!file) return;
  currentFile = file;
  showErrors([]);
  resetResult();
  setObjectUrl("photo", $("photo"), file);
  $("result").hidden = false;
  document.body.setAttribute("aria-busy", "true");
  // Both calls at once, each shown when it lands; one failing does not hide the other.
  const outcomes = await Promise.allSettled([classify(file), edges(file)]);
  document.body.removeAttribute("aria-busy");
  // Nothing came back (not an image, say): only the error shows, not the file the browser cannot render.
  $("result").hidden = !report(outcomes);
}

// The browser cannot show every format the gateway takes (TIFF, say): no broken-image icon, a word instead.
$("photo").addEventListener("error", () => {
  if (!$("photo").getAttribute("src")) return;
  $("photo").hidden = true;
  $("photo-info").textContent = "this browser cannot display it";
});

// The classifiers Triton serves (GET /v1/models), the default one first chosen; the default route if none is listed.
async function loadModels() {
  let classifiers = [];
  try {
    const response = await fetch("v1/models", { headers: authHeaders() });
    if (response.ok) {
      classifiers = (await response.json()).models.filter((m) => m.kind === "classification" && m.about);
    }
  } catch {
    // The gateway is unreachable: readiness says so; the default route stays.
  }
  if (classifiers.length === 0) return;
  const chosen = modelSelect.value;
  modelSelect.replaceChildren(
    ...classifiers.map((model) => {
      const option = new Option(model.about.default ? `${model.name} (default)` : model.name);
      // Relative, for a gateway behind a path prefix; the default classifier's own route is /v1/classify.
      option.value = model.about.default ? "v1/classify" : model.about.route.replace(/^\//, "");
      option.dataset.about = describe(model.about);
      option.selected = option.value === chosen;
      return option;
    }),
  );
  showModel();
}

function describe(about) {
  const p = about.preprocessing;
  return `${about.labels} labels · resize ${p.resize} ${p.interpolation}, crop ${p.crop}`;
}

function showModel() {
  $("model-about").textContent = modelSelect.selectedOptions[0]?.dataset.about || "";
}

modelSelect.addEventListener("change", async () => {
  showModel();
  if (!currentFile || $("result").hidden) return;
  showErrors([]);
  $("predictions-card").hidden = true;
  report(await Promise.allSettled([classify(currentFile)]));
});

async function checkReadiness() {
  const details = $("readiness");
  const list = $("components");
  try {
    const response = await fetch("readyz");
    const body = await response.json();
    details.dataset.state = body.status === "ready" ? "ready" : "not-ready";
    $("readiness-text").textContent = body.status;
    list.replaceChildren(
      ...Object.entries(body.components || {}).flatMap(([name, state]) => {
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        dd.textContent = state;
        return [dt, dd];
      }),
    );
  } catch {
    details.dataset.state = "not-ready";
    $("readiness-text").textContent = "gateway unreachable";
    list.replaceChildren();
  }
}

keyInput.value = localStorage.getItem(KEY_STORAGE) || "";
showKeyState();
keyInput.addEventListener("input", () => {
  const key = keyInput.value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  showKeyState();
});
keyInput.addEventListener("change", loadModels);
// The key is saved as it is typed; Enter in the field must not reload the page.
$("key-form").addEventListener("submit", (event) => event.preventDefault());
$("key-clear").addEventListener("click", () => {
  keyInput.value = "";
  localStorage.removeItem(KEY_STORAGE);
  showKeyState();
  keyInput.focus();
});

fileInput.addEventListener("change", () => analyse(fileInput.files[0]));
// The whole window takes the drop, so a photo dropped beside the zone is not opened by the browser instead.
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropzone.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) dropzone.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dropzone.classList.remove("dragging");
  analyse(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
  if (file) analyse(file);
});

checkReadiness();
loadModels();
