// The page: choose files (or give a link), see what they are, pick a preset or an operation that
// accepts them, set "smaller file ↔ better quality" (raw settings under "Advanced"), start, then
// follow each job in "Current job" (one file) or "These files" (several) and in "My files".
// Everything goes through the public API.

import { Api, describeError, fieldErrors, newIdempotencyKey } from "./api.js";
import { BatchView } from "./batch.js";
import { FilesView } from "./files.js";
import { formatBytes, formatWait } from "./format.js";
import { describeInput, extensionOf, inspectFile, mediaTypeOf } from "./inspect.js";
import { JobView } from "./job.js";
import { estimateSize, renderQualityControl } from "./quality.js";
import { renderParameterForm } from "./schema-form.js";
import { learnVocabulary, operationLabel } from "./status.js";
import { tusUpload } from "./tus.js";

const INIT_RETRY_MS = 5000;

const $ = (id) => document.getElementById(id);

const api = new Api($("main").dataset.apiRoot);
const state = {
  definitions: [],
  presets: [],
  files: [],
  facts: null,
  inspection: null,
  link: "",
  choices: [],
  chosen: null,
  form: null,
  quality: null,
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

const batch = new BatchView(api, {
  send: (file, options) => sendFile(file, options),
  tooLarge: (file, definition) =>
    definition.max_file_size && file.size > definition.max_file_size ? tooLargeMessage(file, definition) : "",
  onCreated: () => files.load(1),
  onChanged: () => files.load(),
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

// --- choosing files (or a link) and what to do with them ----------------------------------------
function acceptedFormats() {
  return [...new Set(state.definitions.flatMap((definition) => definition.input_formats))];
}

function accepts(definition, extension) {
  return definition.input_formats.some((format) => format.toLowerCase() === extension);
}

function unsupportedMessage(extension) {
  const accepted = acceptedFormats().join(", ");
  const what = extension
    ? `Konvrt can't process .${extension} files.`
    : "Konvrt can't tell what kind of file this is: its name has no extension.";
  return `${what} It accepts ${accepted}.`;
}

function releasePreview() {
  if (state.facts?.url) URL.revokeObjectURL(state.facts.url);
  state.facts = null;
  $("input-preview").replaceChildren();
  $("input-list").replaceChildren();
  $("input-list").hidden = true;
  $("input-info").hidden = true;
}

function selectFiles(files) {
  state.files = [...files];
  state.link = "";
  $("source-url").value = "";
  releasePreview();
  clearErrors();
  const total = state.files.reduce((sum, file) => sum + file.size, 0);
  $("file-summary").textContent =
    state.files.length === 1
      ? `${state.files[0].name}, ${formatBytes(state.files[0].size)}`
      : `${state.files.length} files, ${formatBytes(total)} in all: each becomes its own job.`;
  if (!state.definitions.length) return; // Offered once the definitions arrive (see init).
  if (state.files.length === 1) state.inspection = describeSingleFile(state.files[0]);
  else listFiles(state.files);
  const extensions = [...new Set(state.files.map((file) => extensionOf(file.name)))];
  const unsupported = extensions.find((extension) => !state.definitions.some((definition) => accepts(definition, extension)));
  const common = state.definitions.filter((definition) => extensions.every((extension) => accepts(definition, extension)));
  if (unsupported !== undefined) offerChoices([], unsupportedMessage(unsupported));
  else if (!common.length) offerChoices([], "These files have no operation in common: choose files of one kind (videos, images or audio) to process them together.");
  else offerChoices(suggestedOrder(common, extensions));
}

// The operations that make sense first: a file in a format that is not one Konvrt writes (a BMP,
// a TIFF, an AVI) is most likely to be converted, so converting comes first; otherwise the
// server's own order (its most common operation first) stands.
function suggestedOrder(definitions, extensions) {
  const converts = (definition) =>
    definition.name.endsWith("_convert") &&
    extensions.every((extension) => !definition.output_formats.some((format) => format.toLowerCase() === extension));
  return [...definitions].sort((a, b) => Number(converts(b)) - Number(converts(a)));
}

// The picked file read here, before anything is sent: preview, dimensions, duration, format.
async function describeSingleFile(file) {
  const facts = await inspectFile(file, mediaTypeOf(file, state.definitions));
  if (state.files[0] !== file) {
    URL.revokeObjectURL(facts.url);
    return;
  }
  state.facts = facts;
  state.inspection = null;
  $("file-summary").textContent = `${file.name}: ${describeInput(file, facts)}`;
  if (facts.preview) {
    $("input-preview").replaceChildren(facts.preview);
    $("input-info").hidden = false;
  }
  state.quality?.update();
}

function listFiles(files) {
  $("input-list").replaceChildren(
    ...files.map((file) => {
      const item = document.createElement("li");
      item.textContent = `${file.name} · ${formatBytes(file.size)}`;
      return item;
    }),
  );
  $("input-list").hidden = false;
  $("input-info").hidden = false;
}

function selectLink(value) {
  state.link = value.trim();
  if (state.link && state.files.length) {
    state.files = [];
    $("file-input").value = "";
    $("file-summary").textContent = "";
    releasePreview();
  }
  clearErrors();
  if (!state.link) {
    offerChoices(null);
    return;
  }
  // The link's own extension, when it has one, narrows the choice; the worker checks the content.
  let extension = "";
  try {
    extension = extensionOf(new URL(state.link).pathname.split("/").pop() ?? "");
  } catch {
    extension = "";
  }
  const matching = state.definitions.filter((definition) => accepts(definition, extension));
  offerChoices(matching.length ? matching : state.definitions);
}

// Offers `definitions` (and the presets made of them) or, with none, hides the choice and shows
// `error`; `null` clears everything.
function offerChoices(definitions, error = "") {
  if (error) showFileError(error);
  state.choices = definitions ?? [];
  if (!state.choices.length) {
    $("operation-fieldset").hidden = true;
    $("parameters-fieldset").hidden = true;
    state.form = null;
    state.quality = null;
  } else {
    renderChoices();
  }
  updateStartButton();
}

function offeredPresets() {
  const names = new Set(state.choices.map((definition) => definition.name));
  return state.presets.filter((preset) => names.has(preset.operation));
}

function renderChoices() {
  // What the person chose stays chosen while it is offered; otherwise the first suggestion.
  const previous = state.chosen;
  const presets = offeredPresets();
  $("preset-choices").replaceChildren(...presets.map(presetElement));
  $("preset-group").hidden = presets.length === 0;
  $("operation-choices").replaceChildren(...state.choices.map(choiceElement));
  const radios = [...document.querySelectorAll('input[name="operation"]')];
  const chosen = radios.find((radio) => radio.value === previous) ?? $(`operation-${state.choices[0].name}`);
  chosen.checked = true;
  $("operation-fieldset").hidden = false;
  renderParameters();
}

function radioChoice(id, value, titleText, descriptionText, metaText) {
  const wrapper = document.createElement("div");
  wrapper.className = "choice";
  const radio = document.createElement("input");
  radio.type = "radio";
  radio.name = "operation";
  radio.id = id;
  radio.value = value;
  radio.addEventListener("change", () => {
    state.chosen = value;
    clearErrors();
    renderParameters();
  });
  const label = document.createElement("label");
  label.htmlFor = id;
  const title = document.createElement("span");
  title.className = "choice-title";
  title.textContent = titleText;
  const description = document.createElement("span");
  description.className = "choice-description";
  description.textContent = descriptionText;
  const meta = document.createElement("span");
  meta.className = "choice-meta";
  meta.textContent = metaText;
  label.append(title, description, meta);
  wrapper.append(radio, label);
  return wrapper;
}

function choiceElement(definition) {
  return radioChoice(
    `operation-${definition.name}`,
    definition.name,
    operationLabel(definition.name),
    definition.description,
    `Gives ${definition.output_formats.join(", ")} · files up to ${formatBytes(definition.max_file_size)}`,
  );
}

function presetElement(preset) {
  const node = radioChoice(
    `preset-${preset.name}`,
    `preset:${preset.name}`,
    preset.title || preset.name,
    preset.description ?? "",
    `${operationLabel(preset.operation)} with ready-made settings`,
  );
  node.classList.add("choice-preset");
  node.querySelector(".choice-title").className = "preset-title";
  return node;
}

// { definition, preset } for the checked radio.
function selectedChoice() {
  const value = document.querySelector('input[name="operation"]:checked')?.value;
  if (!value) return null;
  if (value.startsWith("preset:")) {
    const preset = state.presets.find((candidate) => `preset:${candidate.name}` === value);
    const definition = state.choices.find((candidate) => candidate.name === preset?.operation);
    return definition ? { definition, preset } : null;
  }
  const definition = state.choices.find((candidate) => candidate.name === value);
  return definition ? { definition, preset: null } : null;
}

function selectedDefinition() {
  return selectedChoice()?.definition ?? null;
}

function renderParameters() {
  const choice = selectedChoice();
  if (!choice) return;
  const { definition, preset } = choice;
  state.form = renderParameterForm($("parameters"), definition.parameters, {
    idPrefix: "param",
    advanced: $("parameters-advanced"),
    initial: preset?.parameters ?? {},
  });
  $("advanced").hidden = !state.form.hasAdvanced;
  state.quality = renderQualityControl($("quality-control"), {
    schema: definition.parameters,
    form: state.form,
    estimate: (values) => estimateSize(values, { duration: state.facts?.duration, operation: definition.name }),
  });
  $("parameters-fieldset").hidden = false;
  updateStartButton();
}

// --- starting jobs ----------------------------------------------------------------------------
// The same file, operation and settings sent again (after a dropped connection, say) reuse the
// key, so the API answers with the operation it may already have created instead of a second one.
function idempotencyKeyFor(source, operation, parameters) {
  const fingerprint = JSON.stringify([source, operation, parameters]);
  if (state.submission?.fingerprint !== fingerprint) state.submission = { fingerprint, key: newIdempotencyKey() };
  return state.submission.key;
}

function tusThreshold() {
  const value = Number($("main").dataset.tusThreshold);
  return Number.isFinite(value) && value > 0 ? value : Infinity;
}

// Sends one file and creates its operation: through tus (resumable) when it is large and the
// server speaks tus, else in one multipart request. Resolves with the operation.
async function sendFile(file, { choice, parameters, idempotencyKey, onProgress, onRetry, setAbort }) {
  const target = choice.preset ? { preset: choice.preset.name } : { operation: choice.definition.name };
  if (file.size >= tusThreshold() && (await api.tusAvailable())) {
    const upload = await tusUpload(api, file, { onProgress, onRetry, setAbort });
    return api.createFromSource({ upload, ...target, parameters, idempotencyKey });
  }
  const request = api.createOperation({ file, ...target, parameters, idempotencyKey, onUploadProgress: onProgress });
  setAbort(request.abort);
  return request.promise;
}

function choiceTitle(choice) {
  return choice.preset ? choice.preset.title || choice.preset.name : operationLabel(choice.definition.name);
}

function tooLargeMessage(file, definition) {
  return (
    `This file is too large: it is ${formatBytes(file.size)} and the limit for ` +
    `${operationLabel(definition.name).toLowerCase()} is ${formatBytes(definition.max_file_size)}.`
  );
}

async function start(event) {
  event.preventDefault();
  const choice = selectedChoice();
  const hasSource = state.files.length > 0 || Boolean(state.link);
  if (state.uploading || !hasSource || !choice || Date.now() < state.holdUntil) return;
  clearErrors();
  const missing = state.form.missing();
  if (missing.size) {
    state.form.showErrors(missing);
    showFormError("Some settings need attention: see the messages next to them.");
    return;
  }
  const parameters = state.form.values();
  if (state.link) {
    await startFromLink(state.link, choice, parameters);
    return;
  }
  const { definition } = choice;
  // One panel follows what was started last: a batch replaces the current job, and back.
  if (state.files.length > 1) {
    job.hide();
    history.replaceState(null, "", location.pathname + location.search);
    batch.run(state.files, { choice, parameters, title: choiceTitle(choice) });
    files.load(1);
    return;
  }
  const file = state.files[0];
  if (definition.max_file_size && file.size > definition.max_file_size) {
    showFileError(tooLargeMessage(file, definition));
    return;
  }
  batch.hide();
  state.uploading = true;
  updateStartButton();
  // The original is shown beside an image result: wait for the (short, bounded) read of it.
  await state.inspection;
  let abort = () => {};
  job.showUpload(file, choiceTitle(choice), () => abort(), state.facts?.url ?? null);
  try {
    const operation = await sendFile(file, {
      choice,
      parameters,
      idempotencyKey: idempotencyKeyFor([file.name, file.size, file.lastModified], definition.name, parameters),
      onProgress: (loaded, total) => job.setUploadProgress(loaded, total),
      onRetry: () => job.uploadInterrupted(),
      setAbort: (stop) => {
        abort = stop;
      },
    });
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

async function startFromLink(link, choice, parameters) {
  const { definition } = choice;
  state.uploading = true;
  updateStartButton();
  try {
    const operation = await api.createFromSource({
      sourceUrl: link,
      ...(choice.preset ? { preset: choice.preset.name } : { operation: definition.name }),
      parameters,
      idempotencyKey: idempotencyKeyFor(link, definition.name, parameters),
    });
    state.submission = null;
    batch.hide();
    job.showLink(link, choiceTitle(choice));
    job.watch(operation, { keepPanel: true });
    files.load(1);
  } catch (error) {
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
    const known = new Set([...state.form.names, "file", "operation", "source_url", "upload", "preset"]);
    const { byField, general } = fieldErrors(error.details, known);
    if (byField.has("file")) showFileError(byField.get("file").join(" "));
    if (byField.has("source_url")) showFileError(byField.get("source_url").join(" "));
    const shown = state.form.showErrors(byField);
    const extra = [...general, ...(byField.get("operation") ?? []), ...(byField.get("preset") ?? [])];
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
  const hasSource = state.files.length > 0 || Boolean(state.link);
  button.disabled = state.uploading || !hasSource || !selectedDefinition() || waiting > 0;
  const label = state.files.length > 1 ? `Start ${state.files.length} jobs` : "Start";
  button.textContent = waiting > 0 ? `${label} (wait ${formatWait(waiting / 1000)})` : state.uploading ? "Uploading…" : label;
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
    if (input.files.length) selectFiles(input.files);
  });
  $("source-url").addEventListener("input", (event) => selectLink(event.target.value));
  $("parameters-fieldset").addEventListener("input", () => state.quality?.update());
  $("parameters-fieldset").addEventListener("change", () => state.quality?.update());
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
    selectFiles(dropped);
  });
  // A file dropped beside the zone would otherwise replace the page with the file.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
}

async function init() {
  try {
    // First on its own, so that the requests after it share the one session it sets up.
    await api.session();
    const [definitions, vocabulary, presets, features] = await Promise.all([
      api.definitions(),
      api.vocabulary(),
      api.presets(),
      api.features(),
    ]);
    // The words and the status rules first: "My files" and the current job are shown with them.
    learnVocabulary({ definitions, vocabulary });
    state.definitions = definitions;
    state.presets = presets;
    $("link-field").hidden = !features.sourceUrl;
    await files.load(1);
    $("file-input").accept = acceptedFormats()
      .map((format) => `.${format}`)
      .join(",");
    showPageError("");
    // Lets people (and the browser tests) know the page can take a file now.
    $("main").dataset.ready = "true";
    if (state.files.length) selectFiles(state.files);
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
