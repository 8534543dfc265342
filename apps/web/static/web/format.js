// Numbers, sizes and times as people read them.

const BYTE_UNITS = ["bytes", "KB", "MB", "GB", "TB"];

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  // "25 MB" rather than "25.0 MB".
  return `${value.toFixed(digits).replace(/\.0$/, "")} ${BYTE_UNITS[unit]}`;
}

// "62% smaller" / "15% larger" / "the same size", comparing an output with its input.
export function formatSizeChange(inputBytes, outputBytes) {
  if (!inputBytes || !Number.isFinite(outputBytes)) return "";
  const change = Math.round(((outputBytes - inputBytes) / inputBytes) * 100);
  if (change === 0) return "about the same size";
  return change < 0 ? `${-change}% smaller` : `${change}% larger`;
}

// A wait in words: "45 seconds", "3 minutes", "1 hour 5 minutes".
export function formatWait(seconds) {
  const total = Math.max(1, Math.ceil(seconds));
  if (total < 60) return plural(total, "second");
  const minutes = Math.ceil(total / 60);
  if (minutes < 60) return plural(minutes, "minute");
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest ? `${plural(hours, "hour")} ${plural(rest, "minute")}` : plural(hours, "hour");
}

export function formatEta(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  if (seconds < 5) return "almost done";
  return `about ${formatWait(seconds)} left`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds % 60);
  return `${minutes}:${String(rest).padStart(2, "0")}`;
}

export function formatDateTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// "expires in 6 days" from an ISO timestamp.
export function formatExpiry(iso) {
  if (!iso) return "";
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  if (!Number.isFinite(seconds)) return "";
  if (seconds <= 0) return "expired";
  if (seconds < 86400) return `expires in ${formatWait(seconds)}`;
  // Rounded: a result kept for 7 days reads "7 days" just after it is made, not "6 days".
  return `expires in ${plural(Math.round(seconds / 86400), "day")}`;
}

// "1920×1080, 12.5 s, h264 + aac": what a file's probed metadata says, briefly.
export function formatMetadata(metadata) {
  if (!metadata) return "";
  const parts = [];
  if (metadata.width && metadata.height) parts.push(`${metadata.width}×${metadata.height}`);
  if (Number.isFinite(metadata.duration) && metadata.duration > 0) parts.push(formatDuration(metadata.duration));
  const codecs = [metadata.video_codec, metadata.audio_codec].filter(Boolean);
  if (codecs.length) parts.push(codecs.join(" + "));
  return parts.join(", ");
}

export function humanize(name) {
  const words = String(name).replaceAll("_", " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}
