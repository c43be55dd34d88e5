// The GC's HTTP API documentation: renders this GC's openapi.json, offline.
//
// Contract with the page (docs.html) and the tests:
// * `#status[data-state]` is loading, ready or error; `body[data-operations]` counts the
//   operations once rendered;
// * every operation is a `#operations details.op` with `data-method` (lower case),
//   `data-path` and an id `op-<method>-<path>`, listed in `#toc` too; inside: its
//   parameters (`tr[data-param]`), request body, responses (`tr[data-status]`) and a try-it
//   form (`form.try`) whose answer lands in `.try-answer` (`data-status`);
// * every schema of `components.schemas` is a `#schemas section.schema[data-name]` with an id
//   `schema-<name>`; a `$ref` anywhere is a link to it.
//
// Every string of the document reaches the page through `textContent`, never as markup.
"use strict";

(function () {
  const SPEC_URL = "openapi.json";
  const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];
  const REF_PREFIX = "#/components/schemas/";
  const TRY_TIMEOUT_MS = 30000;

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function slug(text) {
    return String(text).replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "");
  }

  // Descriptions are CommonMark in principle; here only `code` spans become <code> and blank
  // lines separate paragraphs (a docstring's own line breaks are joined), the rest is text.
  function prose(text, className) {
    const block = el("div", className || "prose");
    for (const paragraph of String(text).split(/\n\s*\n/)) {
      const p = el("p");
      paragraph
        .replace(/\s*\n\s*/g, " ")
        .split("`")
        .forEach((part, i) => p.append(i % 2 ? el("code", null, part) : part));
      block.append(p);
    }
    return block;
  }

  function refName(ref) {
    return typeof ref === "string" && ref.startsWith(REF_PREFIX)
      ? ref.slice(REF_PREFIX.length)
      : null;
  }

  function refLink(name) {
    const a = el("a", "ref", name);
    a.href = "#schema-" + slug(name);
    return a;
  }

  // A schema as a short inline type: `string`, `integer ≥ 1 ≤ 1000`, `JoinIn | null`,
  // `array of ControllerOut`; `$ref`s are links.
  function typeOf(schema) {
    const span = el("span", "type");
    if (!isObject(schema)) {
      span.textContent = "any";
      return span;
    }
    const name = refName(schema.$ref);
    if (name) {
      span.append(refLink(name));
      return span;
    }
    const union = schema.anyOf || schema.oneOf;
    if (Array.isArray(union)) {
      union.forEach((part, i) => {
        if (i) span.append(" | ");
        span.append(typeOf(part));
      });
      return span;
    }
    if (Array.isArray(schema.allOf) && schema.allOf.length === 1) return typeOf(schema.allOf[0]);
    if (schema.type === "array") {
      span.append("array of ", typeOf(schema.items));
      return span;
    }
    if (Array.isArray(schema.enum)) {
      span.textContent = schema.enum.map((v) => JSON.stringify(v)).join(" | ");
      return span;
    }
    if (schema.const !== undefined) {
      span.textContent = JSON.stringify(schema.const);
      return span;
    }
    let text = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
    if (schema.format) text += " (" + schema.format + ")";
    if (schema.type === "object" && isObject(schema.additionalProperties)) {
      span.append("object of ", typeOf(schema.additionalProperties));
      return span;
    }
    span.textContent = text;
    return span;
  }

  // Constraints of a schema (or of the non-null branch of `X | null`), in words.
  function constraints(schema) {
    if (!isObject(schema)) return "";
    const union = schema.anyOf || schema.oneOf;
    const own = [];
    const add = (key, label) => {
      if (schema[key] !== undefined) own.push(label + " " + JSON.stringify(schema[key]));
    };
    add("minLength", "min length");
    add("maxLength", "max length");
    add("minimum", "≥");
    add("maximum", "≤");
    add("exclusiveMinimum", ">");
    add("exclusiveMaximum", "<");
    add("pattern", "pattern");
    add("default", "default");
    if (Array.isArray(union)) {
      for (const part of union) {
        const more = constraints(part);
        if (more) own.push(more);
      }
    }
    return own.join(", ");
  }

  function table(headings, className) {
    const t = el("table", className);
    const head = el("thead");
    const row = el("tr");
    for (const h of headings) {
      const th = el("th", null, h);
      th.scope = "col";
      row.append(th);
    }
    head.append(row);
    const body = el("tbody");
    t.append(head, body);
    return { t, body };
  }

  function cell(content, className) {
    const td = el("td", className);
    if (content instanceof Node) td.append(content);
    else if (content !== undefined && content !== null) td.textContent = String(content);
    return td;
  }

  // --- operations -----------------------------------------------------------------------

  function operationsOf(spec) {
    const ops = [];
    const paths = isObject(spec.paths) ? spec.paths : {};
    for (const path of Object.keys(paths)) {
      const item = paths[path];
      if (!isObject(item)) continue;
      for (const method of METHODS) {
        if (isObject(item[method])) {
          const shared = Array.isArray(item.parameters) ? item.parameters : [];
          ops.push({ path, method, op: item[method], shared });
        }
      }
    }
    return ops;
  }

  function parametersOf(entry) {
    const own = Array.isArray(entry.op.parameters) ? entry.op.parameters : [];
    return entry.shared.concat(own).filter(isObject);
  }

  function renderParameters(params) {
    const { t, body } = table(["name", "in", "type", "required", "constraints", "description"]);
    for (const p of params) {
      const row = el("tr");
      row.dataset.param = String(p.name);
      row.append(
        cell(el("code", null, p.name)),
        cell(p.in),
        cell(typeOf(p.schema)),
        cell(p.required ? "yes" : "no"),
        cell(constraints(p.schema)),
        cell(p.description || (isObject(p.schema) ? p.schema.description : "") || ""),
      );
      body.append(row);
    }
    return t;
  }

  function renderContent(content) {
    const list = el("ul", "content");
    for (const type of Object.keys(isObject(content) ? content : {})) {
      const item = el("li");
      const media = content[type];
      item.append(el("code", null, type), ": ", typeOf(isObject(media) ? media.schema : null));
      list.append(item);
    }
    return list;
  }

  function renderResponses(responses) {
    const { t, body } = table(["status", "description", "body"]);
    const codes = Object.keys(isObject(responses) ? responses : {}).sort();
    for (const code of codes) {
      const r = isObject(responses[code]) ? responses[code] : {};
      const row = el("tr");
      row.dataset.status = code;
      row.append(
        cell(el("code", null, code)),
        cell(r.description || ""),
        cell(r.content ? renderContent(r.content) : "–"),
      );
      body.append(row);
    }
    return t;
  }

  function renderTry(entry, params) {
    const form = el("form", "try");
    form.noValidate = true;
    const inputs = [];
    for (const p of params) {
      if (p.in !== "path" && p.in !== "query") continue;
      const label = el("label");
      const input = el("input");
      input.name = String(p.name);
      input.dataset.in = String(p.in);
      input.required = Boolean(p.required);
      input.spellcheck = false;
      input.autocomplete = "off";
      if (isObject(p.schema) && p.schema.default !== undefined) {
        input.placeholder = String(p.schema.default);
      }
      label.append(el("span", null, p.name + " (" + p.in + ")"), input);
      form.append(label);
      inputs.push(input);
    }
    let bodyInput = null;
    const requestBody = entry.op.requestBody;
    if (isObject(requestBody) && isObject(requestBody.content)) {
      const label = el("label", "body");
      bodyInput = el("textarea");
      bodyInput.name = "body";
      bodyInput.rows = 3;
      bodyInput.spellcheck = false;
      bodyInput.placeholder = requestBody.required ? "JSON body" : "JSON body (optional)";
      label.append(el("span", null, "body (JSON)"), bodyInput);
      form.append(label);
    }
    const send = el("button", null, "Send " + entry.method.toUpperCase());
    send.type = "submit";
    const answer = el("pre", "try-answer");
    answer.hidden = true;
    form.append(send, answer);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      tryIt(entry, inputs, bodyInput, send, answer);
    });
    return form;
  }

  function buildUrl(entry, inputs) {
    let path = entry.path;
    const query = new URLSearchParams();
    for (const input of inputs) {
      const value = input.value;
      if (input.dataset.in === "path") {
        if (value === "") throw new Error("fill in " + input.name);
        path = path.split("{" + input.name + "}").join(encodeURIComponent(value));
      } else if (value !== "") {
        query.append(input.name, value);
      }
    }
    const search = query.toString();
    // Relative to the page (…/docs): the API is at the root of the same origin.
    return "." + path + (search ? "?" + search : "");
  }

  async function tryIt(entry, inputs, bodyInput, send, answer) {
    answer.hidden = false;
    delete answer.dataset.status;
    let url;
    try {
      url = buildUrl(entry, inputs);
    } catch (error) {
      answer.dataset.status = "error";
      answer.textContent = error.message;
      return;
    }
    const init = { method: entry.method.toUpperCase(), headers: { Accept: "application/json" } };
    if (bodyInput && bodyInput.value.trim() !== "") {
      init.body = bodyInput.value;
      init.headers["Content-Type"] = "application/json";
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TRY_TIMEOUT_MS);
    init.signal = controller.signal;
    send.disabled = true;
    answer.textContent = init.method + " " + url.slice(1) + " …";
    try {
      const response = await fetch(url, init);
      const text = await response.text();
      let shown = text;
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch (e) {
        shown = text;
      }
      answer.dataset.status = String(response.status);
      answer.textContent = response.status + " " + response.statusText + "\n" + shown;
    } catch (error) {
      answer.dataset.status = "error";
      answer.textContent = "no answer: " + (error && error.message ? error.message : error);
    } finally {
      clearTimeout(timer);
      send.disabled = false;
    }
  }

  function renderOperation(entry) {
    const { path, method, op } = entry;
    const details = el("details", "op");
    details.id = "op-" + method + "-" + slug(path);
    details.dataset.method = method;
    details.dataset.path = path;
    const summary = el("summary");
    summary.append(
      el("span", "method", method.toUpperCase()),
      el("code", "path", path),
      el("span", "summary", op.summary || ""),
    );
    details.append(summary);
    if (op.description) details.append(prose(op.description));
    const params = parametersOf(entry);
    if (params.length) details.append(el("h4", null, "Parameters"), renderParameters(params));
    if (isObject(op.requestBody)) {
      const required = op.requestBody.required ? "required" : "optional";
      details.append(
        el("h4", null, "Request body (" + required + ")"),
        renderContent(op.requestBody.content),
      );
    }
    details.append(el("h4", null, "Responses"), renderResponses(op.responses));
    details.append(el("h4", null, "Try it"), renderTry(entry, params));
    return details;
  }

  // --- schemas --------------------------------------------------------------------------

  function renderSchema(name, schema) {
    const section = el("section", "schema");
    section.id = "schema-" + slug(name);
    section.dataset.name = name;
    section.append(el("h3", null, name));
    if (!isObject(schema)) return section;
    if (schema.description) section.append(prose(schema.description));
    const props = isObject(schema.properties) ? schema.properties : null;
    if (!props) {
      const shape = el("p", "muted");
      shape.append(typeOf(schema));
      section.append(shape);
      return section;
    }
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    const { t, body } = table(["property", "type", "required", "constraints", "description"]);
    for (const prop of Object.keys(props)) {
      const p = props[prop];
      const row = el("tr");
      row.dataset.property = prop;
      row.append(
        cell(el("code", null, prop)),
        cell(typeOf(p)),
        cell(required.has(prop) ? "yes" : "no"),
        cell(constraints(p)),
        cell(isObject(p) && p.description ? prose(p.description, "cell-prose") : ""),
      );
      body.append(row);
    }
    section.append(t);
    return section;
  }

  // --- the page -------------------------------------------------------------------------

  function render(spec) {
    const info = isObject(spec.info) ? spec.info : {};
    const title = info.title ? String(info.title) : "HTTP API";
    $("title").textContent = title;
    document.title = title + " · HTTP API";
    $("version").textContent =
      "version " + (info.version || "?") + " · OpenAPI " + (spec.openapi || "?");
    if (info.description) $("description").replaceChildren(prose(info.description));
    const ops = operationsOf(spec);
    const toc = $("toc");
    const list = $("operations");
    for (const entry of ops) {
      const node = renderOperation(entry);
      list.append(node);
      const item = el("li");
      const link = el("a");
      link.href = "#" + node.id;
      link.append(el("span", "method", entry.method.toUpperCase()), " ", entry.path);
      link.dataset.method = entry.method;
      item.append(link);
      toc.append(item);
    }
    const schemas = isObject(spec.components) && isObject(spec.components.schemas)
      ? spec.components.schemas
      : {};
    for (const name of Object.keys(schemas).sort()) {
      $("schemas").append(renderSchema(name, schemas[name]));
    }
    document.body.dataset.operations = String(ops.length);
  }

  function openFromHash() {
    const id = window.location.hash.slice(1);
    const target = id ? document.getElementById(id) : null;
    if (target && target.tagName === "DETAILS") target.open = true;
  }

  async function load() {
    const status = $("status");
    try {
      const response = await fetch(SPEC_URL, {
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error("openapi.json answered HTTP " + response.status);
      const spec = await response.json();
      if (!isObject(spec)) throw new Error("openapi.json is not an object");
      render(spec);
      status.dataset.state = "ready";
      status.textContent = "";
      status.hidden = true;
      openFromHash();
    } catch (error) {
      status.dataset.state = "error";
      status.textContent =
        "Cannot load openapi.json: " + (error && error.message ? error.message : error);
    }
  }

  window.addEventListener("hashchange", openFromHash);
  document.addEventListener("DOMContentLoaded", load);
})();
