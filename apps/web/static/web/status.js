// Operation statuses in words, shared by the current job and the "My files" list.

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
export const CANCELLABLE = new Set(["pending", "queued", "processing"]);
export const RETRYABLE = new Set(["failed", "cancelled"]);

const STATUS_LABELS = {
  pending: "Waiting",
  queued: "Queued",
  processing: "Processing",
  completed: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

const PHASES = {
  fetching: "Fetching the upload",
  probing: "Inspecting the file",
  processing: "Processing",
  storing: "Saving the result",
};

const OPERATION_LABELS = {
  video_compress: "Compress video",
  video_convert: "Convert video",
  image_resize: "Resize image",
  image_convert: "Convert image",
  audio_convert: "Convert audio",
  audio_extract: "Extract audio",
};

export function statusLabel(status) {
  return STATUS_LABELS[status] ?? status;
}

export function phaseLabel(phase) {
  return PHASES[phase] ?? "Processing";
}

// A readable name for an operation; unknown (newly added) operations still read acceptably.
export function operationLabel(name) {
  if (OPERATION_LABELS[name]) return OPERATION_LABELS[name];
  const words = String(name).replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
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
