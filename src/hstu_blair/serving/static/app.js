// The hstu-blair page: build a history (search by title), set filters, ask POST /recommend, show the
// list (with the history items behind each recommendation when "explain" is on).
// Query string: ?history=id1,id2&k=10&user=ID&explain=1&filter={JSON} pre-fills the form and
// recommends at once (filter: the same JSON as the API's, e.g. {"where": {"in_stock": true}}).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [] }; // [{item_id, title}]

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : data.detail;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return data;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  for (const [i, item] of state.history.entries()) {
    const li = element("li");
    li.title = item.item_id;
    const remove = element("button", "×");
    remove.setAttribute("aria-label", "remove");
    remove.onclick = () => { state.history.splice(i, 1); renderHistory(); };
    li.append(remove, element("span", item.title || item.item_id, "history-title")); // floated button first
    list.append(li);
  }
  $("history-empty").hidden = state.history.length > 0;
}

async function addToHistory(itemId) {
  try {
    const item = await api(`/items/${encodeURIComponent(itemId)}`);
    state.history.push({ item_id: item.item_id, title: item.title });
  } catch (err) {
    state.history.push({ item_id: itemId, title: `${itemId} (unknown)` });
  }
  renderHistory();
}

let searchTimer = null;
function onSearch() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const query = $("search").value.trim();
    const box = $("search-results");
    if (!query) { box.hidden = true; return; }
    const items = await api(`/items?query=${encodeURIComponent(query)}&limit=15`);
    box.replaceChildren(...items.map((item) => {
      const li = element("li", item.title || item.item_id);
      li.onclick = () => {
        state.history.push(item); renderHistory();
        box.hidden = true; $("search").value = "";
      };
      return li;
    }));
    box.hidden = items.length === 0;
  }, 150);
}

// ---- filters: one control per item attribute (GET /attributes), plus allow / exclude id lists ----
function attributeControl(name, info) {
  const label = element("label", `${name} `);
  let control;
  if (info.kind === "number") {
    control = element("span", undefined, "range");
    for (const bound of ["min", "max"]) {
      const input = element("input");
      Object.assign(input, { type: "number", step: "any", placeholder: `${bound} ${info[bound] ?? ""}` });
      input.dataset.attribute = name;
      input.dataset.bound = bound;
      control.append(input);
    }
  } else {
    control = element("select");
    control.dataset.attribute = name;
    const choices = info.kind === "bool" ? [["true", "yes"], ["false", "no"]]
      : (info.values || []).map((v) => [String(v.value), `${v.value} (${v.count})`]);
    control.append(element("option", "any"), ...choices.map(([value, text]) => {
      const option = element("option", text);
      option.value = value;
      return option;
    }));
    control.options[0].value = "";
    control.dataset.kind = info.kind;
  }
  label.append(control);
  return label;
}

async function loadAttributes() {
  const attributes = await api("/attributes").catch(() => ({}));
  const box = $("attribute-filters");
  box.replaceChildren(...Object.entries(attributes).map(([name, info]) => attributeControl(name, info)));
  box.addEventListener("change", showFilter);
}

const idList = (id) => $(id).value.split(",").map((s) => s.trim()).filter(Boolean);

function currentFilter() {
  const where = {};
  for (const node of document.querySelectorAll("#attribute-filters [data-attribute]")) {
    const name = node.dataset.attribute;
    if (node.value === "") continue;
    if (node.dataset.bound) {
      where[name] = { ...(where[name] || {}), [node.dataset.bound]: Number(node.value) };
    } else {
      where[name] = node.dataset.kind === "bool" ? node.value === "true" : node.value;
    }
  }
  const filter = {};
  if (Object.keys(where).length) filter.where = where;
  if (idList("exclude-ids").length) filter.exclude = idList("exclude-ids");
  if (idList("allow-ids").length) filter.allow = idList("allow-ids");
  return Object.keys(filter).length ? filter : null;
}

function showFilter() {
  const filter = currentFilter();
  $("filter-summary").textContent = filter ? `filter: ${JSON.stringify(filter)}` : "no filter";
}

function setFilter(filter) {
  for (const [name, condition] of Object.entries(filter.where || {})) {
    for (const node of document.querySelectorAll(`#attribute-filters [data-attribute="${CSS.escape(name)}"]`)) {
      if (node.dataset.bound) node.value = condition[node.dataset.bound] ?? "";
      else node.value = String(condition);
    }
  }
  $("exclude-ids").value = (filter.exclude || []).join(", ");
  $("allow-ids").value = (filter.allow || []).join(", ");
  showFilter();
}

function reasonsCell(rec) {
  const cell = element("td", undefined, "reasons");
  for (const reason of rec.reasons || []) {
    const span = element("span", reason.title || reason.item_id, "reason");
    span.title = `${reason.item_id}: ${reason.weight.toFixed(3)}`;
    cell.append(span);
  }
  return cell;
}

function renderResults(items, skipped) {
  const table = $("results");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  const top = items.length ? Math.max(...items.map((r) => r.score)) : 1;
  const explained = items.some((r) => r.reasons !== undefined);
  for (const [i, rec] of items.entries()) {
    const tr = element("tr", undefined, "rec");
    tr.append(element("td", String(i + 1), "rank"), element("td", rec.title, "rec-title"),
      element("td", rec.item_id, "muted"));
    const score = element("td", undefined, "score");
    const bar = element("span", undefined, "bar");
    bar.style.width = `${Math.max(2, 80 * Math.max(0, rec.score) / Math.max(top, 1e-9))}px`;
    score.append(bar, document.createTextNode(rec.score.toFixed(3)));
    tr.append(score);
    if (explained) tr.append(reasonsCell(rec));
    body.append(tr);
  }
  $("reasons-head").hidden = !explained;
  table.hidden = items.length === 0;
  const note = skipped.length ? ` (skipped unknown: ${skipped.join(", ")})` : "";
  $("status").className = "muted";
  $("status").textContent = `${items.length} items${note}`;
}

async function recommend() {
  const user = $("user").value.trim();
  const body = { k: Number($("k").value) || 10, exclude_seen: $("exclude-seen").checked, skip_unknown: true };
  const filter = currentFilter();
  if (filter) body.filter = filter;
  if ($("explain").checked) body.explain = true;
  if (user) body.user_id = user; else body.history = state.history.map((h) => h.item_id);
  if (!user && body.history.length === 0) { $("status").textContent = "Pick at least one item."; return; }
  $("status").textContent = "…";
  try {
    const data = await api("/recommend", body);
    renderResults(data.items, data.skipped);
  } catch (err) {
    $("results").hidden = true;
    $("status").className = "error";
    $("status").textContent = err.message;
  }
}

async function init() {
  $("search").addEventListener("input", onSearch);
  $("go").onclick = recommend;
  $("clear").onclick = () => { state.history = []; $("user").value = ""; renderHistory(); };
  api("/healthz").then((h) => {
    $("model-info").textContent = `${h.model} · fusion ${h.fusion} · ${h.dataset} · ${h.num_items} items`;
  }).catch(() => {});
  const params = new URLSearchParams(window.location.search);
  await loadAttributes();
  $("exclude-ids").addEventListener("input", showFilter);
  $("allow-ids").addEventListener("input", showFilter);
  if (params.get("filter")) {
    try { setFilter(JSON.parse(params.get("filter"))); } catch (err) { $("filter-summary").textContent = `bad filter: ${err.message}`; }
  } else showFilter();
  if (params.get("explain")) $("explain").checked = ["1", "true", "yes"].includes(params.get("explain"));
  if (params.get("k")) $("k").value = params.get("k");
  if (params.get("user")) $("user").value = params.get("user");
  const ids = (params.get("history") || "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const id of ids) await addToHistory(id);
  renderHistory();
  if (ids.length || params.get("user")) await recommend();
}

init();
