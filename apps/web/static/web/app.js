// The page: choose a file, pick an operation that accepts it, fill in its settings, start it,
// then follow it in "Current job" and "My files". Everything goes through the public API.

import { Api, describeError, fieldErrors, newIdempotencyKey } from "./api.js";
import { FilesView } from "./files.js";
import { formatBytes, formatWait } from "./format.js";
import { JobView } from "./job.js";
import { renderParameterForm } from "./schema-form.js";
import { learnVocabulary, operationLabel } from "./status.js";

const INIT_RETRY_MS = 5000;

const $ = (id) => document.getElementById(id);

const api = new Api($("main").dataset.apiRoot);
const state = {
  definitions: [],
  file: null,
  choices: [],
  form: null,
  uploading: false,
  submission: null,
  holdUntil: 0,
  holdTimer: null,
};

const job = new JobView(api, {
  onStatusChange(status, { changed }) {
    files.updateStatus(status);
    if (changed) files.load();
  },
  onGone() {
    files.load();
  },
});

const files = new FilesView(api, {
  onOpen: (operation) => openOperation(operation.id, { focus: true }),
  onActed(operation) {
    if (operation?.id && operation.id === job.currentId) job.watch(operation, { keepPanel: true });
  },
  onRemoved(id) {
    if (id === job.currentId) {
      job.hide();
      history.replaceState(null, "", location.pathname + location.search);
    }
  },
  currentId: () => job.currentId,
});

// --- choosing a file and an operation ---------------------------------------------------------
function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

function acceptedFormats() {
  return [...new Set(state.definitions.flatMap((definition) => definition.input_formats))];
}

function unsupportedMessage(extension) {
  const accepted = acceptedFormats().join(", ");
  const what = extension
    ? `Konvrt can't process .${extension} files.`
    : "Konvrt can't tell what kind of file this is: its name has no extension.";
  return `${what} It accepts ${accepted}.`;
}

function selectFile(file) {
  state.file = file;
  clearErrors();
  $("file-summary").textContent = `${file.name}, ${formatBytes(file.size)}`;
  if (!state.definitions.length) return; // Offered once the definitions arrive (see init).
  const extension = extensionOf(file.name);
  state.choices = state.definitions.filter((definition) =>
    definition.input_formats.some((format) => format.toLowerCase() === extension),
  );
  if (!state.choices.length) {
    showFileError(unsupportedMessage(extension));
    $("operation-fieldset").hidden = true;
    $("parameters-fieldset").hidden = true;
    state.form = null;
  } else {
    renderChoices();
  }
  updateStartButton();
}

function renderChoices() {
  const previous = selectedDefinition()?.name;
  const container = $("operation-choices");
  container.replaceChildren(...state.choices.map(choiceElement));
  const chosen = state.choices.find((definition) => definition.name === previous) ?? state.choices[0];
  container.querySelector(`input[value="${CSS.escape(chosen.name)}"]`).checked = true;
  $("operation-fieldset").hidden = false;
  renderParameters(chosen);
}

function choiceElement(definition) {
  const id = `operation-${definition.name}`;
  const wrapper = document.createElement("div");
  wrapper.className = "choice";
  const radio = document.createElement("input");
  radio.type = "radio";
  radio.name = "operation";
  radio.id = id;
  radio.value = definition.name;
  radio.addEventListener("change", () => {
    clearErrors();
    renderParameters(definition);
  });
  const label = document.createElement("label");
  label.htmlFor = id;
  const title = document.createElement("span");
  title.className = "choice-title";
  title.textContent = operationLabel(definition.name);
  const description = document.createElement("span");
  description.className = "choice-description";
  description.textContent = definition.description;
  const meta = document.createElement("span");
  meta.className = "choice-meta";
  meta.textContent = `Gives ${definition.output_formats.join(", ")} · files up to ${formatBytes(definition.max_file_size)}`;
  label.append(title, description, meta);
  wrapper.append(radio, label);
  return wrapper;
}

function selectedDefinition() {
  const checked = document.querySelector('input[name="operation"]:checked');
  return state.choices.find((definition) => definition.name === checked?.value) ?? null;
}

function renderParameters(definition) {
  state.form = renderParameterForm($("parameters"), definition.parameters, { idPrefix: "param" });
  $("parameters-fieldset").hidden = false;
  updateStartButton();
}

// --- starting a job ---------------------------------------------------------------------------
// The same file, operation and settings sent again (after a dropped connection, say) reuse the
// key, so the API answers with the operation it may already have created instead of a second one.
function idempotencyKeyFor(file, operation, parameters) {
  const fingerprint = JSON.stringify([file.name, file.size, file.lastModified, operation, parameters]);
  if (state.submission?.fingerprint !== fingerprint) state.submission = { fingerprint, key: newIdempotencyKey() };
  return state.submission.key;
}

async function start(event) {
  event.preventDefault();
  const definition = selectedDefinition();
  if (state.uploading || !state.file || !definition || Date.now() < state.holdUntil) return;
  clearErrors();
  const missing = state.form.missing();
  if (missing.size) {
    state.form.showErrors(missing);
    showFormError("Some settings need attention: see the messages next to them.");
    return;
  }
  if (definition.max_file_size && state.file.size > definition.max_file_size) {
    showFileError(
      `This file is too large: it is ${formatBytes(state.file.size)} and the limit for ` +
        `${operationLabel(definition.name).toLowerCase()} is ${formatBytes(definition.max_file_size)}.`,
    );
    return;
  }
  const file = state.file;
  const parameters = state.form.values();
  const upload = api.createOperation({
    file,
    operation: definition.name,
    parameters,
    idempotencyKey: idempotencyKeyFor(file, definition.name, parameters),
    onUploadProgress: (loaded, total) => job.setUploadProgress(loaded, total),
  });
  state.uploading = true;
  updateStartButton();
  job.showUpload(file, definition.name, upload.abort);
  try {
    const operation = await upload.promise;
    state.submission = null;
    job.uploadFinished();
    job.watch(operation, { keepPanel: true });
    files.load(1);
  } catch (error) {
    job.hide();
    showStartError(error, definition);
  } finally {
    state.uploading = false;
    updateStartButton();
  }
}

function showStartError(error, definition) {
  const message = describeError(error, { limit: definition.max_file_size });
  if (error.code === "file_too_large" || error.code === "unsupported_media") {
    showFileError(message);
    return;
  }
  if (error.code === "validation_error") {
    const { byField, general } = fieldErrors(error.details, new Set([...state.form.names, "file", "operation"]));
    if (byField.has("file")) showFileError(byField.get("file").join(" "));
    const shown = state.form.showErrors(byField);
    const extra = [...general, ...(byField.get("operation") ?? [])];
    showFormError([shown ? "Some settings need attention: see the messages next to them." : message, ...extra].join(" "));
    return;
  }
  if (error.code === "throttled") holdStart(error.retryAfter ?? 60);
  showFormError(message);
}

// After a 429 the button waits out Retry-After, counting down.
function holdStart(seconds) {
  state.holdUntil = Date.now() + seconds * 1000;
  clearInterval(state.holdTimer);
  state.holdTimer = setInterval(() => {
    if (Date.now() >= state.holdUntil) {
      clearInterval(state.holdTimer);
      state.holdTimer = null;
    }
    updateStartButton();
  }, 1000);
  updateStartButton();
}

function updateStartButton() {
  const button = $("start-button");
  const waiting = state.holdUntil - Date.now();
  button.disabled = state.uploading || !state.file || !selectedDefinition() || waiting > 0;
  button.textContent = waiting > 0 ? `Start (wait ${formatWait(waiting / 1000)})` : state.uploading ? "Uploading…" : "Start";
}

// --- messages ---------------------------------------------------------------------------------
function showFileError(message) {
  $("file-error").textContent = message;
  $("file-error").hidden = false;
}

function showFormError(message) {
  $("form-error").textContent = message;
  $("form-error").hidden = false;
}

function clearErrors() {
  for (const id of ["file-error", "form-error"]) {
    $(id).textContent = "";
    $(id).hidden = true;
  }
  state.form?.clearErrors();
}

function showPageError(message) {
  $("page-alert").textContent = message;
  $("page-alert").hidden = !message;
}

// --- opening an operation (from "My files" or the address after a reload) ----------------------
function operationIdFromHash() {
  const match = /^#operation=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

async function openOperation(id, { focus = false } = {}) {
  try {
    job.watch(await api.operation(id));
    if (focus) {
      $("job").scrollIntoView({ block: "start" });
      $("job-heading").focus({ preventScroll: true });
    }
  } catch (error) {
    if (error.code === "not_found") history.replaceState(null, "", location.pathname + location.search);
    else showPageError(describeError(error));
  }
}

// --- wiring -----------------------------------------------------------------------------------
function wireFileInput() {
  const input = $("file-input");
  const zone = $("drop-zone");
  input.addEventListener("change", () => {
    if (input.files.length) selectFile(input.files[0]);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const dropped = event.dataTransfer?.files;
    if (!dropped?.length) return;
    input.files = dropped;
    selectFile(dropped[0]);
  });
  // A file dropped beside the zone would otherwise replace the page with the file.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
}

async function init() {
  try {
    // First on its own, so that the requests after it share the one session it sets up.
    await api.session();
    const [definitions, vocabulary] = await Promise.all([api.definitions(), api.vocabulary()]);
    // The words and the status rules first: "My files" and the current job are shown with them.
    learnVocabulary({ definitions, vocabulary });
    state.definitions = definitions;
    await files.load(1);
    $("file-input").accept = acceptedFormats()
      .map((format) => `.${format}`)
      .join(",");
    showPageError("");
    // Lets people (and the browser tests) know the page can take a file now.
    $("main").dataset.ready = "true";
    if (state.file) selectFile(state.file);
    const id = operationIdFromHash();
    if (id) openOperation(id);
  } catch (error) {
    showPageError(`${describeError(error)} This page will try again by itself.`);
    setTimeout(init, error.retryAfter ? error.retryAfter * 1000 : INIT_RETRY_MS);
  }
}

wireFileInput();
$("job-form").addEventListener("submit", start);
init();
