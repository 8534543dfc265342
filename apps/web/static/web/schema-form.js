// A form generated from an operation's JSON Schema (the same schema the API validates against):
// enum → select, bounded number with a default → slider with a number box, other numbers →
// number box, boolean → checkbox, string → text box. Defaults are filled in, `required` is
// marked, and `anyOf` groups of required properties ("width or height") are explained.

import { humanize } from "./format.js";

// Labels in the words people use, for parameter names the schema leaves bare. The schema's own
// description stays beside each field as its hint; unknown names are humanized.
const LABELS = {
  output_format: "Output format",
  preset: "Encoding speed",
  audio_bitrate: "Audio bitrate",
  maintain_aspect_ratio: "Keep proportions",
  sample_rate: "Sample rate",
  target_size_mb: "Target size (MB)",
  max_height: "Largest height",
  target_lufs: "Loudness (LUFS)",
  true_peak: "Peak limit (dBTP)",
};

// What stays in view; every other setting is folded under "Advanced".
function isMainField(name, required, inGroup) {
  return required || inGroup || name === "output_format";
}

// A slider is only usable when each step is visible; wider ranges (pixels) get a number box.
const MAX_SLIDER_SPAN = 200;

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

// The property names of `anyOf: [{required: [a]}, {required: [b]}]`: at least one must be given.
function oneOfGroup(schema) {
  const alternatives = schema.anyOf ?? [];
  if (!alternatives.length || !alternatives.every((option) => Array.isArray(option.required))) return [];
  return [...new Set(alternatives.flatMap((option) => option.required))];
}

function listInWords(names) {
  const words = names.map((name) => humanize(name).toLowerCase());
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} or ${words.at(-1)}`;
}

function withArticle(words) {
  return `${/^[aeiou]/.test(words) ? "an" : "a"} ${words}`;
}

function enumControl(id, property, required) {
  const select = element("select", { id });
  const hasDefault = property.default !== undefined;
  if (!hasDefault) {
    // Nothing chosen yet: a required field must be chosen, an optional one may stay unset.
    select.append(element("option", { value: "", text: required ? "Choose…" : "Not set" }));
  }
  property.enum.forEach((value, index) => {
    select.append(element("option", { value: String(index), text: String(value) }));
  });
  if (hasDefault) select.value = String(property.enum.indexOf(property.default));
  return {
    control: select,
    focusTarget: select,
    read: () => (select.value === "" ? undefined : property.enum[Number(select.value)]),
    write: (value) => {
      const index = property.enum.indexOf(value);
      if (index >= 0) select.value = String(index);
    },
  };
}

function booleanControl(id, property) {
  const checkbox = element("input", { id, type: "checkbox" });
  checkbox.checked = Boolean(property.default);
  return {
    control: checkbox,
    focusTarget: checkbox,
    read: () => checkbox.checked,
    write: (value) => {
      checkbox.checked = Boolean(value);
    },
  };
}

function numberBox(id, property) {
  return element("input", {
    id,
    type: "number",
    inputmode: property.type === "integer" ? "numeric" : "decimal",
    min: property.minimum,
    max: property.maximum,
    step: property.type === "integer" ? 1 : "any",
    value: property.default,
  });
}

function readNumber(input) {
  return input.value.trim() === "" ? undefined : Number(input.value);
}

function numberControl(id, property, label) {
  const { minimum, maximum } = property;
  const sliderFits =
    property.default !== undefined &&
    Number.isFinite(minimum) &&
    Number.isFinite(maximum) &&
    maximum - minimum <= MAX_SLIDER_SPAN;
  if (!sliderFits) {
    const box = numberBox(id, property);
    return {
      control: box,
      focusTarget: box,
      read: () => readNumber(box),
      write: (value) => {
        box.value = value ?? "";
      },
    };
  }
  // The slider is the labelled control; the box beside it shows the value and takes typing.
  const slider = element("input", {
    id,
    type: "range",
    min: minimum,
    max: maximum,
    step: property.type === "integer" ? 1 : "any",
    value: property.default,
  });
  const box = numberBox(`${id}-value`, property);
  box.setAttribute("aria-label", `${label} value`);
  slider.addEventListener("input", () => {
    box.value = slider.value;
  });
  box.addEventListener("input", () => {
    if (box.value !== "") slider.value = box.value;
  });
  return {
    control: element("div", { className: "slider" }, slider, box),
    focusTarget: slider,
    read: () => readNumber(box),
    write: (value) => {
      box.value = value;
      slider.value = value;
    },
  };
}

function textControl(id, property) {
  const input = element("input", { id, type: "text", value: property.default });
  return {
    control: input,
    focusTarget: input,
    read: () => (input.value === "" ? undefined : input.value),
    write: (value) => {
      input.value = value ?? "";
    },
  };
}

function createField(name, property, { idPrefix, required, inGroup }) {
  const id = `${idPrefix}-${name}`;
  const label = property.title ?? LABELS[name] ?? humanize(name);
  let built;
  if (Array.isArray(property.enum)) built = enumControl(id, property, required);
  else if (property.type === "boolean") built = booleanControl(id, property);
  else if (property.type === "integer" || property.type === "number") built = numberControl(id, property, label);
  else built = textControl(id, property);

  const hint = property.description ? element("p", { className: "hint", id: `${id}-hint`, text: property.description }) : null;
  const error = element("p", { className: "field-error", id: `${id}-error`, hidden: true });
  const describedBy = [hint?.id, error.id].filter(Boolean).join(" ");
  built.focusTarget.setAttribute("aria-describedby", describedBy);
  if (required) built.focusTarget.setAttribute("aria-required", "true");

  const labelNode = element("label", { for: id }, label);
  if (required) labelNode.append(element("span", { className: "required", text: " (required)" }));
  else if (inGroup) labelNode.append(element("span", { className: "required", text: " (one of these)" }));

  const isCheckbox = property.type === "boolean" && !Array.isArray(property.enum);
  const wrapper = element("div", { className: isCheckbox ? "field field-checkbox" : "field", "data-field": name });
  if (isCheckbox) wrapper.append(built.control, labelNode);
  else wrapper.append(labelNode, built.control);
  if (hint) wrapper.append(hint);
  wrapper.append(error);

  const inputs = wrapper.querySelectorAll("input, select");
  return {
    name,
    element: wrapper,
    read: built.read,
    write: built.write,
    main: isMainField(name, required, inGroup),
    focus: () => {
      // A field folded under "Advanced" is unfolded to show its message.
      const details = wrapper.closest("details");
      if (details) details.open = true;
      built.focusTarget.focus();
    },
    showError(messages) {
      error.textContent = messages.join(" ");
      error.hidden = false;
      for (const input of inputs) input.setAttribute("aria-invalid", "true");
    },
    clearError() {
      error.textContent = "";
      error.hidden = true;
      for (const input of inputs) input.removeAttribute("aria-invalid");
    },
  };
}

// Builds the form into `container` (the main settings) and `advanced` (the rest, folded away;
// without it everything goes in `container`), starting from `initial` values (a preset's) over
// the schema's defaults, and returns what the page needs from it.
export function renderParameterForm(container, schema, { idPrefix = "param", advanced = null, initial = {} } = {}) {
  container.replaceChildren();
  advanced?.replaceChildren();
  const properties = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  const group = oneOfGroup(schema ?? {});
  if (group.length) {
    container.append(element("p", { className: "group-note", text: `Give at least one of: ${listInWords(group)}.` }));
  }
  const fields = new Map();
  for (const [name, property] of Object.entries(properties)) {
    const field = createField(name, property, { idPrefix, required: required.has(name), inGroup: group.includes(name) });
    fields.set(name, field);
    if (initial[name] !== undefined) field.write(initial[name]);
    (field.main || !advanced ? container : advanced).append(field.element);
  }
  if (!fields.size) container.append(element("p", { className: "hint", text: "This operation has no settings." }));

  return {
    fields,
    names: new Set(fields.keys()),
    hasAdvanced: [...fields.values()].some((field) => !field.main),
    set(name, value) {
      fields.get(name)?.write(value);
    },
    values() {
      const values = {};
      for (const [name, field] of fields) {
        const value = field.read();
        if (value !== undefined) values[name] = value;
      }
      return values;
    },
    // What can be told without the server: a missing required value or an empty "one of" group.
    // Ranges and everything else are the API's to judge (its messages are shown the same way).
    missing() {
      const problems = new Map();
      const values = this.values();
      for (const name of required) {
        if (values[name] === undefined && fields.has(name)) {
          const label = withArticle(humanize(name).toLowerCase());
          problems.set(name, [Array.isArray(properties[name].enum) ? `Choose ${label}.` : `Enter ${label}.`]);
        }
      }
      if (group.length && !group.some((name) => values[name] !== undefined)) {
        for (const name of group) problems.set(name, [`Enter at least one of these: ${listInWords(group)}.`]);
      }
      return problems;
    },
    showErrors(byField) {
      let first = null;
      for (const [name, messages] of byField) {
        const field = fields.get(name);
        if (!field) continue;
        field.showError(messages);
        first ??= field;
      }
      first?.focus();
      return Boolean(first);
    },
    clearErrors() {
      for (const field of fields.values()) field.clearError();
    },
  };
}
