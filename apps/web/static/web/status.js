// Operations, statuses and phases in words, and what each status allows, as the API publishes
// them (/operation-definitions/ and /vocabulary/); shared by the current job and "My files".

let operationTitles = new Map();
let statuses = new Map();
let phaseLabels = new Map();

// Called once, with the definitions and the vocabulary, before anything is shown.
export function learnVocabulary({ definitions, vocabulary }) {
  operationTitles = new Map(definitions.map((definition) => [definition.name, definition.title]));
  statuses = new Map(vocabulary.statuses.map((status) => [status.name, status]));
  phaseLabels = new Map(vocabulary.phases.map((phase) => [phase.name, phase.label]));
}

// A name the page has no words for (one added since it loaded) still reads acceptably.
function humanize(name) {
  const words = String(name).replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function isTerminal(status) {
  return statuses.get(status)?.terminal === true;
}

export function isCancellable(status) {
  return statuses.get(status)?.cancellable === true;
}

export function isRetryable(status) {
  return statuses.get(status)?.retryable === true;
}

export function statusLabel(status) {
  return statuses.get(status)?.label ?? humanize(status);
}

export function phaseLabel(phase) {
  if (!phase) return "Processing";
  return phaseLabels.get(phase) ?? humanize(phase);
}

export function operationLabel(name) {
  return operationTitles.get(name) || humanize(name);
}

export function sentence(text) {
  const trimmed = String(text ?? "").trim();
  if (!trimmed) return "";
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

export function queueText(position) {
  if (!position) return "Queued.";
  return position === 1 ? "Queued: next in line." : `Queued: number ${position} in line.`;
}
